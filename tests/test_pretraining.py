"""The distillation algorithm (torch-only core): masks, EMA, targets, losses, gradients, initialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotion2vec.models.config import ConfigError, preset
from emotion2vec.pretrain.masking import block_mask, crop_mask, mask_info, span_mask
from emotion2vec.pretrain.distill import CollapseError, DistillationConfig, Emotion2VecPretrainer, ema_decay_at
from emotion2vec.pretrain.init import init_from_checkpoint

NO_DROPOUT = dict(encoder_dropout=0.0, attention_dropout=0.0, post_mlp_drop=0.0, layerdrop=0.0, prenet_layerdrop=0.0,
                  prenet_dropout=0.0, decoder_input_dropout=0.0, activation_dropout=0.0, dropout_input=0.0)


def make(seed=0, dropout=False, **distill):
    cfg = preset("small", **({} if dropout else NO_DROPOUT))
    d = DistillationConfig(**{"clone_batch": 2, "average_top_k_layers": 2, "mask_noise_std": 0.0, **distill})
    torch.manual_seed(seed)
    model = Emotion2VecPretrainer(cfg, d).train()
    with torch.no_grad():  # a teacher that differs from the student
        for k in model.teacher.fp32:
            model.teacher.fp32[k] += 0.05 * torch.randn_like(model.teacher.fp32[k])
        model.teacher._sync()
    return model


def batch(model, B=2, n=16000, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(B, n, generator=g)
    T = model.cfg.num_frames(n)
    mask = torch.from_numpy(block_mask(B * model.distill.clone_batch, T, rng=np.random.default_rng(seed)))
    return src, mask


@pytest.mark.parametrize("T", [2, 7, 49, 50, 149, 1000])
def test_block_masks_have_exactly_half_the_frames(T):
    m = block_mask(8, T, 0.5, 5, 0.05, rng=np.random.default_rng(T))
    assert m.shape == (8, T) and (m.sum(1) == int(0.5 * T)).all()
    assert not np.array_equal(m[0], m[1]) or T < 5


def test_block_masks_are_blocks_and_seeded():
    a = block_mask(4, 200, rng=np.random.default_rng(0))
    assert np.array_equal(a, block_mask(4, 200, rng=np.random.default_rng(0)))
    runs = [len(r) for row in a for r in "".join("1" if v else "0" for v in row).split("0") if r]
    assert np.mean(runs) > 3  # contiguous blocks, not isolated frames


def test_span_masks_equal_counts_and_cropping():
    m = span_mask(6, 100, 0.5, 5, rng=np.random.default_rng(0))
    counts = m.sum(1)
    assert (counts == counts[0]).all() and 20 <= counts[0] <= 50
    c = crop_mask(block_mask(3, 100, rng=np.random.default_rng(1)), 40, np.random.default_rng(2))
    assert c.shape == (3, 40)


def test_mask_info_keeps_unmasked_frames_in_order():
    mask = torch.from_numpy(block_mask(3, 30, rng=np.random.default_rng(0)))
    info = mask_info(mask)
    assert info.ids_keep.shape == (3, 15)
    for r in range(3):
        assert torch.equal(info.ids_keep[r], torch.nonzero(~mask[r]).squeeze(1))
        perm = torch.cat([info.ids_keep[r], torch.nonzero(mask[r]).squeeze(1)])
        assert torch.equal(perm[info.ids_restore[r]], torch.arange(30))


def test_ema_decay_schedule():
    assert ema_decay_at(0, 0.999, 0.99999, 20000) == pytest.approx(0.999)
    assert ema_decay_at(10000, 0.999, 0.99999, 20000) == pytest.approx((0.999 + 0.99999) / 2)
    assert ema_decay_at(20000, 0.999, 0.99999, 20000) == 0.99999
    assert ema_decay_at(50000, 0.999, 0.99999, 20000) == 0.99999
    assert ema_decay_at(7, 0.9, 0.9, 10) == 0.9


def test_ema_step_equals_the_formula():
    model = make(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)
    before = {k: v.clone() for k, v in model.teacher.fp32.items()}
    student = dict(model.encoder.named_parameters())
    decay = model.ema_step(5)  # after optimizer step 5: d(5) = 0.99 - 0.09 * 0.5
    assert decay == pytest.approx(0.945)
    assert set(before) == set(student)  # the teacher is the context encoder: no CNN, projection or decoder
    for k, v in model.teacher.fp32.items():
        assert torch.allclose(v, decay * before[k] + (1 - decay) * student[k].detach(), atol=1e-7)
        assert torch.equal(dict(model.teacher.module.named_parameters())[k], v)


def hand_targets(model, feats):
    """Teacher targets computed independently: full teacher forward, instance norm by formula, average."""
    E, P, L, k = model.cfg.num_extra_tokens, model.cfg.prenet_depth, model.cfg.depth, model.distill.average_top_k_layers
    out = model.teacher.module(feats)
    ys = []
    for i in range(P + L - k, P + L):
        t = out.ffn_outputs[i][:, E:].float()
        if model.distill.instance_norm_target_layer:  # over time, per utterance and channel
            t = (t - t.mean(1, keepdim=True)) / torch.sqrt(t.var(1, unbiased=False, keepdim=True) + 1e-5)
        if model.distill.layer_norm_target_layer:  # over channels, per frame
            t = (t - t.mean(2, keepdim=True)) / torch.sqrt(t.var(2, unbiased=False, keepdim=True) + 1e-5)
        ys.append(t)
    return sum(ys) / k


def test_official_utterance_target_is_the_zero_vector_and_layer_norm_is_not():
    """With instance-normalised targets the time-mean the official run regresses the chunk tokens onto is 0."""
    model = make()
    feats, _ = model.local_features(batch(model)[0])
    y, utt = model.teacher_targets(feats)
    assert utt.abs().max() < 1e-5 and y.std() > 0.3
    model.distill.utterance_target = "layer_norm"
    y2, utt2 = model.teacher_targets(feats)
    assert torch.equal(y, y2) and utt2.std() > 0.01 and not torch.allclose(utt2[0], utt2[1], atol=1e-3)


@pytest.mark.parametrize("mode,target,norms", [("token", "instance_norm", (True, False)),
                                               ("chunk", "instance_norm", (True, False)),
                                               ("global", "instance_norm", (True, True)),
                                               ("chunk", "layer_norm", (False, True))])
def test_losses_equal_a_hand_computation(mode, target, norms):
    model = make(utterance_loss=mode, utterance_loss_weight=0.7, utterance_target=target,
                 instance_norm_target_layer=norms[0], layer_norm_target_layer=norms[1])
    src, mask = batch(model)
    captured = {}

    def keep(name, value):  # hooks must return None, or they replace the module's output
        captured.setdefault(name, value)

    model.encoder.register_forward_hook(lambda m, a, out: keep("enc", out.x.detach()))
    model.decoder.register_forward_hook(lambda m, a, out: keep("pred", out.detach()))
    model.decoder.register_forward_pre_hook(lambda m, a: keep("dec_in", a[0].detach()))
    out = model(src, mask)

    feats, _ = model.local_features(src)
    with torch.no_grad():
        y = hand_targets(model, feats)
        if target == "layer_norm":  # per-frame layer norm of each top-k teacher FFN output, averaged, time-mean
            E, P, L, k = 4, 1, 3, 2
            ffn = model.teacher.module(feats).ffn_outputs
            layers = [ffn[i][:, E:] for i in range(P + L - k, P + L)]
            y_utt = sum((t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-5)
                        for t in layers).mean(1) / k
        else:
            y_utt = y.mean(1)
    C, E, D = model.distill.clone_batch, model.cfg.num_extra_tokens, model.cfg.embed_dim
    x, pred, dec_in = captured["enc"], captured["pred"], captured["dec_in"]
    frame, utt, M = 0.0, 0.0, 0
    for r in range(mask.shape[0]):
        b = r // C  # clones of utterance b are rows bC .. bC+C-1
        kept = torch.nonzero(~mask[r]).squeeze(1)
        # decoder input: encoder frame outputs back at their time steps, zeros (noise std 0) where masked
        assert torch.allclose(dec_in[r, kept], x[r, E:], atol=1e-6)
        assert dec_in[r, mask[r]].abs().max() == 0
        for t in torch.nonzero(mask[r]).squeeze(1):
            frame += float(((pred[r, t] - y[b, t]) ** 2).sum()) / math.sqrt(D)
            M += 1
        u = {"token": x[r, E - 1], "chunk": x[r, :E].mean(0), "global": x[r, E:].mean(0)}[mode]
        utt += float(((u - y_utt[b]) ** 2).sum()) / math.sqrt(D)
    assert out.sample_size == M == int(mask.sum())
    assert out.losses["frame"].item() == pytest.approx(frame, rel=1e-4)
    assert out.losses["utt"].item() == pytest.approx(utt * 0.7 * M, rel=1e-4)
    assert out.logs["masked_pct"] == pytest.approx(int(mask[0].sum()) / mask.shape[1])


def test_teacher_gets_no_gradient_and_student_gets_both_losses():
    model = make()
    src, mask = batch(model)
    out = model(src, mask)
    decoder = list(model.decoder.parameters())
    utt_grads = torch.autograd.grad(out.losses["utt"], decoder + [model.encoder.extra_tokens], allow_unused=True,
                                    retain_graph=True)
    assert all(g is None or g.abs().max() == 0 for g in utt_grads[:-1])  # the utterance head bypasses the decoder
    assert utt_grads[-1].abs().max() > 0  # ... and trains the utterance tokens
    frame_grads = torch.autograd.grad(out.losses["frame"], decoder, retain_graph=True)
    assert all(g.abs().max() > 0 for g in frame_grads)
    (sum(out.losses.values()) / out.sample_size).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.module.parameters())
    assert all(p.grad is not None for p in model.parameters())


def test_no_utterance_gradient_when_alpha_is_zero():
    model = make(utterance_loss_weight=0.0)
    src, mask = batch(model)
    out = model(src, mask)
    assert float(out.losses["utt"]) == 0.0 and not out.losses["utt"].requires_grad
    reference = make(utterance_loss_weight=1.0)
    ref_out = reference(src, mask)
    g0 = torch.autograd.grad(out.losses["frame"], model.encoder.extra_tokens)[0]
    g1 = torch.autograd.grad(ref_out.losses["frame"], reference.encoder.extra_tokens)[0]
    assert torch.allclose(g0, g1)  # the same frame-loss gradient: alpha = 0 adds nothing


def test_state_dict_holds_tensors_and_the_teacher_round_trips():
    model = make()
    state = model.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and "_ema" not in state
    teacher = model.teacher_state_dict()
    assert set(teacher) == set(model.teacher.fp32)
    other = make(seed=3)
    other.load_state_dict(state)
    assert other.load_teacher_state_dict(teacher) == []
    for k, v in model.teacher.fp32.items():
        assert torch.equal(other.teacher.fp32[k], v)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))


def test_collapse_guard_stops_with_a_clear_message():
    model = make(min_target_var=1e9, collapse_check_after=3)
    src, mask = batch(model)
    model.set_num_updates(2)
    model(src, mask)  # not armed yet
    model.set_num_updates(3)
    with pytest.raises(CollapseError, match="representation collapse at update 3: target_var="):
        model(src, mask)


def test_invalid_distillation_settings_are_named():
    with pytest.raises(ConfigError, match="utterance_loss='bogus'"):
        make(utterance_loss="bogus")
    with pytest.raises(ConfigError, match="average_top_k_layers=9"):
        make(average_top_k_layers=9)
    with pytest.raises(ConfigError, match="num_extra_tokens"):
        Emotion2VecPretrainer(preset("small", num_extra_tokens=0), DistillationConfig(average_top_k_layers=3))
    model = make()
    with pytest.raises(ValueError, match="mask shape"):
        model(torch.randn(2, 16000), torch.zeros(3, 49, dtype=torch.bool))


def test_dropout_training_step_runs_and_masks_default_to_spans():
    model = make(dropout=True)
    out = model(torch.randn(2, 16000))
    assert 0.2 < out.logs["masked_pct"] < 0.6 and torch.isfinite(sum(out.losses.values()))


@pytest.mark.parametrize("layout", ["fairseq", "remap"])
def test_init_from_data2vec_style_checkpoint(fixtures_dir, layout):
    src = fixtures_dir / "legacy_data2vec2.pt"  # 3 main blocks, no prenet, no utterance tokens, with _ema
    from emotion2vec.models.checkpoint import read_checkpoint

    ck = read_checkpoint(src)
    cfg = ck.config.replace(prenet_depth=1, depth=2, num_extra_tokens=2)
    torch.manual_seed(0)
    model = Emotion2VecPretrainer(cfg, DistillationConfig(average_top_k_layers=2))
    random_prenet = model.encoder.prenet[0].attention.qkv.weight.detach().clone()
    report = init_from_checkpoint(model, str(src), layout=layout)
    own = model.state_dict()
    if layout == "fairseq":  # names as they are: blocks.0-1 <- blocks.0-1, prenet and tokens random
        assert torch.equal(own["encoder.blocks.1.attention.qkv.weight"], ck.model["encoder.blocks.1.attention.qkv.weight"])
        assert torch.equal(own["encoder.prenet.0.attention.qkv.weight"], random_prenet)
        assert torch.equal(model.teacher.fp32["prenet.0.attention.qkv.weight"], random_prenet)
        assert "skipped 12 not in this model" in report[1]
    else:  # in order: block 0 -> prenet 0, blocks 1-2 -> main 0-1
        assert torch.equal(own["encoder.prenet.0.attention.qkv.weight"], ck.model["encoder.blocks.0.attention.qkv.weight"])
        assert torch.equal(own["encoder.blocks.1.attention.qkv.weight"], ck.model["encoder.blocks.2.attention.qkv.weight"])
        assert torch.equal(model.teacher.fp32["blocks.1.attention.qkv.weight"], ck.teacher["blocks.2.attention.qkv.weight"])
    assert torch.equal(own["feature_extractor.layers.0.conv.weight"], ck.model["feature_extractor.layers.0.conv.weight"])
    assert any("teacher: loaded" in line for line in report)
    assert any("left" in line and "extra_tokens" in line for line in report)


def test_twenty_updates_on_the_demo_corpus_lower_the_loss_and_move_the_teacher(tmp_path):
    """Without fairseq: the core objective, dataset and EMA trained for 20 updates on synthetic speech. A broken loss
    (no gradient signal), a frozen teacher or a teacher that does not follow the student fails this."""
    from emotion2vec.demo.synth import build_corpus
    from emotion2vec.pretrain.data import MaskSettings, PretrainingDataset
    from emotion2vec.pretrain.manifest import build_manifest

    build_corpus(tmp_path / "corpus", seed=0, num_speakers=2, utterances_per_emotion=2)
    build_manifest([tmp_path / "corpus"], tmp_path / "manifest", log=lambda m: None)
    torch.manual_seed(0)
    cfg = preset("small", **NO_DROPOUT)
    d = DistillationConfig(clone_batch=4, average_top_k_layers=3, ema_decay=0.9, ema_end_decay=0.99,
                           ema_anneal_end_step=20, utterance_loss="global", utterance_target="layer_norm")
    model = Emotion2VecPretrainer(cfg, d).train()
    ds = PretrainingDataset(tmp_path / "manifest" / "train.tsv", cfg.num_frames,
                            masks=MaskSettings(4, d.mask_prob, d.mask_prob_adjust, d.mask_length), seed=1)
    batches = [ds.collater([ds[i] for i in range(j, j + 4)]) for j in range(0, len(ds) - 3, 4)]
    fixed = batches[0]["net_input"]

    def loss_on_fixed() -> float:
        torch.manual_seed(123)  # same noise tokens every time
        with torch.no_grad():
            out = model(fixed["source"], fixed["mask"])
        return float(sum(out.losses.values())) / out.sample_size

    teacher0 = {k: v.clone() for k, v in model.teacher.fp32.items()}
    before = loss_on_fixed()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    for update in range(1, 21):
        b = batches[update % len(batches)]["net_input"]
        out = model(b["source"], b["mask"])
        loss = sum(out.losses.values()) / out.sample_size
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.ema_step(update)
    after = loss_on_fixed()
    assert after < 0.7 * before, (before, after)
    student = dict(model.encoder.named_parameters())
    moved = sum(float((model.teacher.fp32[k] - teacher0[k]).norm()) for k in teacher0 if k in student)
    gap_now = sum(float((model.teacher.fp32[k] - student[k].detach()).norm()) for k in teacher0 if k in student)
    gap_if_frozen = sum(float((teacher0[k] - student[k].detach()).norm()) for k in teacher0 if k in student)
    assert moved > 0 and gap_now < gap_if_frozen  # the teacher follows the student, slowly
