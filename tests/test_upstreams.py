"""Upstreams beyond emotion2vec: data2vec (v1) natively (golden vectors, both positional convolutions, convert, API,
pretraining initialisation), Hugging Face speech encoders (parity with transformers, padding semantics, Whisper's
window, errors) and the openSMILE baselines (frames, functionals, settings record)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from emotion2vec import Emotion2Vec
from emotion2vec.cli import main as cli
from emotion2vec.extract.backends import load_backend
from emotion2vec.extract.engine import BatchedForward
from emotion2vec.extract.store import FeatureStore
from emotion2vec.models.checkpoint import CheckpointError, load_model, read_checkpoint
from emotion2vec.models.config import ConfigError, Emotion2VecConfig
from emotion2vec.models.data2vec1 import (KEY_RULES, Data2Vec1KeyError, Data2Vec1Model, WeightNormPositionalConv,
                                          data2vec1_to_ours, map_state)
from emotion2vec.models.upstream import Upstream, load_upstream
from emotion2vec.pretrain.distill import DistillationConfig, Emotion2VecPretrainer
from emotion2vec.pretrain.init import init_from_checkpoint

from conftest import SHARED

TOL = 1e-5
REPO = Path(__file__).resolve().parents[1]
D2V1 = "data2vec1_audio.pt"


def run(*args) -> int:
    return cli([str(a) for a in args])


def _error(out, ref, k, rows=0) -> float:
    """Max abs error of the final output and every block's output of input k (row ``rows`` of a batch)."""
    T = ref[f"x{k}"].shape[0]
    blocks = len([n for n in ref.files if n.startswith(f"hidden{k}_")])
    errs = [np.abs(out.x[rows, :T].numpy() - ref[f"x{k}"]).max()]
    errs += [np.abs(out.layer_outputs[i][rows, :T].numpy() - ref[f"hidden{k}_{i}"]).max() for i in range(blocks)]
    return float(max(errs))


def _normalized(ref, k) -> torch.Tensor:
    w = torch.from_numpy(ref[f"wav{k}"])
    return F.layer_norm(w, w.shape)


def data2vec1_errors(ckpt: Path, ref_path: Path) -> dict[str, float]:
    """Max abs error against a data2vec (v1) reference: one by one (SDPA, eager) and batched (4 inputs, padded)."""
    model, _ = load_upstream(ckpt)
    ref = np.load(ref_path)
    out = {}
    with torch.no_grad():
        for impl in ("sdpa", "eager"):
            model.set_attention_implementation(impl)
            out[f"one by one, {impl}"] = max(_error(model.extract_features(_normalized(ref, k)[None]), ref, k)
                                             for k in range(4))
        wavs = [_normalized(ref, k) for k in range(4)]
        batch, pad = torch.zeros(4, max(map(len, wavs))), torch.ones(4, max(map(len, wavs)), dtype=torch.bool)
        for k, w in enumerate(wavs):
            batch[k, :len(w)], pad[k, :len(w)] = w, False
        feats = model.set_attention_implementation("sdpa").extract_features(batch, pad)
        out["batched (4, padded)"] = max(_error(feats, ref, k, rows=k) for k in range(4))
    return out


# ------------------------------------------------------------------------------------------------ data2vec (v1)
@pytest.fixture
def d2v1(fixtures_dir):
    return fixtures_dir / D2V1, np.load(fixtures_dir / "data2vec1_audio_reference.npz")


def test_data2vec1_golden_vectors_one_by_one_and_batched(fixtures_dir):
    errors = data2vec1_errors(fixtures_dir / D2V1, fixtures_dir / "data2vec1_audio_reference.npz")
    assert max(errors.values()) < TOL, errors


def test_data2vec1_is_a_native_upstream(d2v1):
    model, info = load_upstream(d2v1[0])
    assert isinstance(model, Data2Vec1Model) and isinstance(model, Upstream)
    assert info.source == "data2vec1-fairseq" and info.classifier is None
    assert sorted(info.meta["dropped"]) == ["final_proj.bias", "final_proj.weight", "mask_emb"]
    cfg = model.cfg
    assert (cfg.num_layers, cfg.embed_dim, cfg.frame_stride, cfg.normalize) == (3, 96, 320, True)
    assert (cfg.conv_pos_depth, cfg.conv_pos_kernel) == (5, 19)


def test_weight_normed_positional_convolution_equals_torch_weight_norm():
    """fairseq's default pos_conv_depth 1: weight = g * v / ||v|| over every dim but the kernel axis, then GELU."""
    torch.manual_seed(0)
    ours = WeightNormPositionalConv(32, 16, 4)
    with torch.no_grad():
        ours.weight_g.mul_(torch.rand_like(ours.weight_g) + 0.5)
    conv = torch.nn.Conv1d(32, 32, 16, padding=8, groups=4)
    conv = torch.nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(ours.weight_g)
        conv.parametrizations.weight.original1.copy_(ours.weight_v)
        conv.bias.copy_(ours.bias)
    x = torch.randn(2, 50, 32)
    expected = F.gelu(conv(x.transpose(1, 2))[..., :-1]).transpose(1, 2)  # an even kernel drops the last step
    assert torch.allclose(ours(x), expected, atol=1e-6)
    pad = torch.zeros(2, 50, dtype=torch.bool)
    pad[1, 30:] = True  # padded frames are zeroed before the convolution
    assert torch.allclose(ours(x, pad)[1, :30], ours(x[1:2, :30])[0], atol=1e-6)


@pytest.mark.skipif(not (SHARED / "peers" / "make_data2vec1_fixture.py").exists(), reason="peers not found")
def test_weight_normed_variant_against_fairseq(tmp_path):
    """The 'hidden' geometry of the peer script: pos_conv_depth 1, even kernel 16, 2 heads, fairseq's own forward."""
    pytest.importorskip("fairseq", reason="the fairseq extra is not installed")
    peers = SHARED / "peers"
    env = dict(os.environ, PY=sys.executable, TMPDIR=str(tmp_path))
    path = subprocess.run(["bash", str(peers / "fairseq_data2vec.sh"), str(tmp_path / "peer")], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, str(peers / "make_data2vec1_fixture.py"), str(tmp_path), "d2v1", "hidden"],
                   env=dict(env, PYTHONPATH=path), capture_output=True, text=True, check=True, cwd=REPO)
    model, _ = load_upstream(tmp_path / "d2v1.pt")
    assert model.cfg.conv_pos_depth == 1 and isinstance(model.encoder.pos_conv, WeightNormPositionalConv)
    errors = data2vec1_errors(tmp_path / "d2v1.pt", tmp_path / "d2v1_reference.npz")
    assert max(errors.values()) < TOL, errors


def test_key_rules_have_one_example_each_and_unknown_keys_are_errors(d2v1):
    examples = {
        "feature_extractor.conv_layers.3.0.weight": "feature_extractor.layers.3.conv.weight",
        "feature_extractor.conv_layers.3.2.1.bias": "feature_extractor.layers.3.norm.bias",
        "layer_norm.weight": "feature_projection.norm.weight",
        "post_extract_proj.bias": "feature_projection.linear.bias",
        "encoder.pos_conv.4.0.weight": "encoder.pos_conv.layers.4.conv.weight",
        "encoder.pos_conv.0.weight_g": "encoder.pos_conv.weight_g",
        "encoder.layer_norm.weight": "encoder.context_norm.weight",
        "encoder.layers.2.self_attn.k_proj.weight": "encoder.blocks.2.attention.k_proj.weight",
        "encoder.layers.2.self_attn.out_proj.bias": "encoder.blocks.2.attention.out_proj.bias",
        "encoder.layers.2.self_attn_layer_norm.weight": "encoder.blocks.2.attention_norm.weight",
        "encoder.layers.2.fc1.weight": "encoder.blocks.2.feed_forward.fc1.weight",
        "encoder.layers.2.final_layer_norm.bias": "encoder.blocks.2.final_norm.bias",
    }
    assert len(examples) == len(KEY_RULES)
    for theirs, ours in examples.items():
        assert data2vec1_to_ours(theirs) == ours
        assert data2vec1_to_ours("module." + theirs) == ours
    path, _ = d2v1
    ckpt = torch.load(path, weights_only=False)
    with pytest.raises(Data2Vec1KeyError, match="encoder.layers.0.adapter.weight"):
        map_state({**ckpt["model"], "encoder.layers.0.adapter.weight": torch.zeros(1)}, "x")
    state = {k: v for k, v in ckpt["model"].items() if k != "encoder.layers.1.self_attn.v_proj.bias"}
    with pytest.raises(Data2Vec1KeyError, match=r"encoder\.blocks\.1\.attention\.bias: found only the k/q"):
        map_state(state, "x")


def test_unknown_keys_and_unsupported_configs_are_refused_by_name(d2v1, tmp_path):
    path, _ = d2v1
    ckpt = torch.load(path, weights_only=False)
    bad = dict(ckpt, model={**ckpt["model"], "encoder.quantizer.vars": torch.zeros(3)})
    torch.save(bad, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="encoder.quantizer.vars"):
        load_model(tmp_path / "unknown.pt")
    cfg = dict(ckpt["cfg"], model=dict(ckpt["cfg"]["model"], layer_norm_first=True))
    torch.save(dict(ckpt, cfg=cfg), tmp_path / "prenorm.pt")
    with pytest.raises(CheckpointError, match="layer_norm_first=True"):
        load_model(tmp_path / "prenorm.pt")
    short = {k: v for k, v in ckpt["model"].items() if not k.startswith("encoder.layers.2.")}
    torch.save(dict(ckpt, model=short), tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="missing tensor encoder.blocks.2"):
        load_model(tmp_path / "short.pt")


def test_data2vec1_teacher_from_ema_is_read(d2v1, tmp_path):
    """fairseq keeps data2vec's EMA teacher under model._ema, relative to the encoder (ema_transformer_only)."""
    path, _ = d2v1
    ckpt = torch.load(path, weights_only=False)
    ema = {k[len("encoder."):]: v + 1.0 for k, v in ckpt["model"].items()
           if k.startswith("encoder.") and not k.startswith("encoder.pos_conv")}  # ema_layers_only: no pos_conv
    torch.save(dict(ckpt, model={**ckpt["model"], "_ema": ema}), tmp_path / "ema.pt")
    loaded = read_checkpoint(tmp_path / "ema.pt")
    assert loaded.teacher is not None and "pos_conv.layers.0.conv.weight" not in loaded.teacher
    q = ckpt["model"]["encoder.layers.1.self_attn.q_proj.weight"]
    assert torch.equal(loaded.teacher["blocks.1.attention.qkv.weight"][:96], q + 1.0)
    assert torch.equal(loaded.teacher["context_norm.bias"], ckpt["model"]["encoder.layer_norm.bias"] + 1.0)


def test_data2vec1_extract_convert_api_and_layers(d2v1, tmp_path):
    path, ref = d2v1
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for k in range(4):
        sf.write(wavs / f"utt{k}.wav", ref[f"wav{k}"], 16000, subtype="FLOAT")
    assert run("extract", "--checkpoint", path, "--input", wavs, "--out", tmp_path / "all", "--layers", "all",
               "--num-workers", "0", "--quiet") == 0
    store = FeatureStore(tmp_path / "all")
    meta = json.loads((tmp_path / "all" / "features.json").read_text())
    assert meta["backend"] == "data2vec1" and meta["num_layers"] == 3 and store.layers == [0, 1, 2]
    for k in range(4):
        x = store[f"utt{k}"]
        assert max(np.abs(x[i] - ref[f"hidden{k}_{i}"]).max() for i in range(3)) < TOL
    # convert -> our format -> the same features through the Python API, any layer
    assert run("convert", path, tmp_path / "conv") == 0
    assert json.loads((tmp_path / "conv" / "config.json").read_text())["model"]["architecture"] == "data2vec1"
    for source in (path, tmp_path / "conv"):
        model = Emotion2Vec.from_checkpoint(source)
        assert model.num_layers == 3
        frames = model.extract([ref[f"wav{k}"] for k in range(4)], sample_rate=16000, granularity="frame",
                               layers="all")
        for k in range(4):
            assert np.abs(frames[k][1] - ref[f"hidden{k}_1"]).max() < TOL
            assert np.abs(frames[k][-1] - ref[f"x{k}"]).max() < TOL
        utt = model.extract(ref["wav2"], sample_rate=16000, layers=-2)
        assert utt.shape == (96,) and np.abs(utt - ref["hidden2_1"].mean(0)).max() < TOL


# ------------------------------------------------------------------------------------------------ init_from
def _student(tokens: int, layers: int = 3) -> Emotion2VecPretrainer:
    cfg = Emotion2VecConfig(feature_encoder_spec="[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64,2,2)] * 2",
                            embed_dim=96, num_heads=4, mlp_ratio=2.0, prenet_depth=1, depth=layers - 1,
                            num_extra_tokens=tokens, decoder_dim=64, decoder_layers=1)
    torch.manual_seed(0)
    return Emotion2VecPretrainer(cfg, DistillationConfig(average_top_k_layers=layers - 1,
                                                         utterance_loss="chunk" if tokens else "global"))


def _student_error(model: Emotion2VecPretrainer, ref) -> float:
    """Student and teacher against data2vec's outputs (final and every block, prenet first)."""
    E, errs = model.cfg.num_extra_tokens, []
    model.eval()
    with torch.no_grad():
        for k in range(4):
            x = _normalized(ref, k)[None]
            errs.append(_error(model.extract_features(x), ref, k))
            teacher = model.teacher.module(model.local_features(x)[0])
            errs.append(float(np.abs(teacher.x[0, E:].numpy() - ref[f"x{k}"]).max()))
    return max(errs)


def test_initialised_student_computes_data2vec_exactly_without_extra_tokens(d2v1):
    """docs/pretraining.md's statement: with the remap layout and no utterance tokens, student and teacher start as
    data2vec (ALiBi scales 0, data2vec's LayerNorm after the positional convolution = the context encoder's input LayerNorm);
    emotion2vec's utterance tokens are attended by every frame and change the outputs."""
    path, ref = d2v1
    model = _student(tokens=0)
    report = init_from_checkpoint(model, str(path), layout="remap")
    assert _student_error(model, ref) < TOL
    assert not model.encoder.alibi_scale.detach().any() and not model.teacher.fp32["alibi_scale"].any()
    assert any("alibi_scale set to 0" in line for line in report)
    assert any("mask_emb, final_proj.weight, final_proj.bias" in line for line in report)
    assert any("teacher: no _ema in the file, copied from the loaded student" in line for line in report)

    with_tokens = _student(tokens=2)
    init_from_checkpoint(with_tokens, str(path), layout="remap")
    assert _student_error(with_tokens, ref) > 1e-3


def test_init_from_data2vec1_fairseq_layout_fills_main_blocks_by_index(d2v1):
    path, _ = d2v1
    model = _student(tokens=2)
    prenet = model.encoder.prenet[0].attention.qkv.weight.detach().clone()
    report = init_from_checkpoint(model, str(path), layout="fairseq")
    loaded = read_checkpoint(path).model
    assert torch.equal(model.encoder.blocks[1].attention.qkv.weight, loaded["encoder.blocks.1.attention.qkv.weight"])
    assert torch.equal(model.encoder.context_norm.weight, loaded["encoder.context_norm.weight"])
    assert torch.equal(model.encoder.pos_conv.layers[4].conv.weight, loaded["encoder.pos_conv.layers.4.conv.weight"])
    assert torch.equal(model.encoder.prenet[0].attention.qkv.weight, prenet)  # left random
    assert "skipped 12 not in this model" in report[1] and "encoder.extra_tokens" in report[1]


def test_table8_configs_compose(tmp_path):
    """The three initialisations of the paper's Table 8 differ only in model.init_from / model.init_layout."""
    pytest.importorskip("hydra", reason="hydra (fairseq extra) is not installed")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base=None):
        runs = {name: compose(config_name="emotion2vec_base", overrides=overrides) for name, overrides in {
            "cold start": ["model.init_from=null"],
            "data2vec": ["model.init_from=audio_base_ls.pt", "model.init_layout=remap"],
            "data2vec 2.0": ["model.init_from=base_libri.pt"]}.items()}
    assert runs["cold start"].model.init_from is None
    assert runs["data2vec"].model.init_layout == "remap" and runs["data2vec 2.0"].model.init_layout == "fairseq"
    for cfg in runs.values():
        assert cfg.optimization.max_update == 100000 and cfg.optimization.lr == [7.5e-5]


# ------------------------------------------------------------------------------------------------ Hugging Face
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)


def _hf_configs(transformers):
    t = transformers
    return {  # name: (config, model class, padding policy)
        "wav2vec2_base": (t.Wav2Vec2Config(**SMALL), t.Wav2Vec2Model, "unpadded"),
        "wav2vec2_large": (t.Wav2Vec2Config(**SMALL, feat_extract_norm="layer", do_stable_layer_norm=True),
                           t.Wav2Vec2Model, "mask"),
        "hubert_base": (t.HubertConfig(**SMALL), t.HubertModel, "unpadded"),
        "wavlm_large": (t.WavLMConfig(**SMALL, feat_extract_norm="layer", do_stable_layer_norm=True, num_buckets=16,
                                      max_bucket_distance=50), t.WavLMModel, "mask"),
        "data2vec_audio": (t.Data2VecAudioConfig(**{**SMALL, "num_conv_pos_embeddings": 5}), t.Data2VecAudioModel,
                           "unpadded"),
        "unispeech_base": (t.UniSpeechConfig(**SMALL), t.UniSpeechModel, "unpadded"),
        "unispeech_large": (t.UniSpeechConfig(**SMALL, feat_extract_norm="layer", do_stable_layer_norm=True),
                            t.UniSpeechModel, "mask"),
        "unispeech_sat_base": (t.UniSpeechSatConfig(**SMALL), t.UniSpeechSatModel, "unpadded"),
        "unispeech_sat_large": (t.UniSpeechSatConfig(**SMALL, feat_extract_norm="layer", do_stable_layer_norm=True),
                                t.UniSpeechSatModel, "mask"),
        "whisper": (t.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                    decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80,
                                    vocab_size=100, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                                    eos_token_id=2, decoder_start_token_id=1), t.WhisperModel, "window"),
    }


def build_hf_models(root: Path) -> dict[str, tuple[Path, type, str]]:
    """Tiny random models of every supported class, saved with save_pretrained (nothing is downloaded)."""
    import transformers

    out = {}
    for name, (config, cls, policy) in _hf_configs(transformers).items():
        torch.manual_seed(0)
        cls(config).save_pretrained(root / name)
        out[name] = (root / name, cls, policy)
    return out


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    pytest.importorskip("transformers", reason="the hf extra is not installed")
    return build_hf_models(tmp_path_factory.mktemp("hf"))


WAVS = [torch.randn(n, generator=torch.Generator().manual_seed(n)) * 0.1 for n in (16000, 12000, 12000, 7001)]


@functools.lru_cache(maxsize=None)
def _transformers_model(folder, cls):
    return cls.from_pretrained(folder).eval()


def _reference(folder, cls, wav: torch.Tensor) -> list[torch.Tensor]:
    """transformers' own pipeline on one input: its feature extractor, then the model; hidden states, last = final."""
    import transformers

    model = _transformers_model(folder, cls)
    with torch.no_grad():
        if cls is transformers.WhisperModel:
            inputs = transformers.WhisperFeatureExtractor(feature_size=80)(wav.numpy(), sampling_rate=16000,
                                                                           return_tensors="pt").input_features
            out = model.encoder(inputs, output_hidden_states=True)
        else:
            inputs = transformers.Wav2Vec2FeatureExtractor()(wav.numpy(), sampling_rate=16000,
                                                             return_tensors="pt").input_values
            out = model(inputs, output_hidden_states=True)
    return [*out.hidden_states[:-1], out.last_hidden_state]


def hf_errors(folder, cls) -> dict[str, float]:
    """Max abs error over every hidden state: against transformers one by one, and batched against one by one."""
    model, _ = load_upstream(f"hf:{folder}")
    n = max(map(len, WAVS))
    batch, pad = torch.zeros(len(WAVS), n), torch.ones(len(WAVS), n, dtype=torch.bool)
    for i, w in enumerate(WAVS):
        batch[i, :len(w)], pad[i, :len(w)] = w, False
    parity, batched = [], []
    with torch.no_grad():
        together = model.extract_features(batch, pad)
        for i, w in enumerate(WAVS):
            alone = model.extract_features(w[None])
            ref = _reference(folder, cls, w)
            T = model.cfg.num_frames(len(w))
            assert len(ref) == model.cfg.num_layers and alone.x.shape[1] == T
            parity += [float((alone.layer_outputs[j][0] - ref[j][0, :T]).abs().max()) for j in range(len(ref))]
            batched += [float((together.layer_outputs[j][i, :T] - alone.layer_outputs[j][0]).abs().max())
                        for j in range(len(ref))]
            assert int((~together.padding_mask[i]).sum()) == T
    return {"vs transformers, one by one": max(parity), "batched vs one by one": max(batched)}


@pytest.mark.parametrize("name", ["wav2vec2_base", "wav2vec2_large", "hubert_base", "wavlm_large", "data2vec_audio",
                                  "unispeech_base", "unispeech_large", "unispeech_sat_base", "unispeech_sat_large",
                                  "whisper"])
def test_hf_parity_with_transformers_and_padding_semantics(hf_models, name):
    folder, cls, policy = hf_models[name]
    model, info = load_upstream(f"hf:{folder}")
    assert isinstance(model, torch.nn.Module) and isinstance(model, Upstream)
    assert model.cfg.padding == policy and info.source == f"hf:{cls.__name__}"
    assert model.cfg.num_layers == 3 and model.cfg.frame_stride == 320 and not model.cfg.normalize
    errors = hf_errors(folder, cls)
    assert max(errors.values()) < TOL, errors


def test_models_trained_without_attention_masks_differ_when_padded(hf_models):
    """Why the base models run unpadded: transformers' own padded forward changes the shorter input's features."""
    folder, cls, _ = hf_models["wav2vec2_base"]
    model = cls.from_pretrained(folder).eval()
    short, long_ = WAVS[3], WAVS[0]
    batch = torch.stack([long_, F.pad(short, (0, len(long_) - len(short)))])
    with torch.no_grad():
        padded = model(batch).last_hidden_state[1]
        alone = model(short[None]).last_hidden_state[0]
    assert float((padded[:len(alone)] - alone).abs().max()) > 1e-2


def test_hf_layers_are_hidden_states_through_the_cli_and_api(hf_models, tmp_path, capsys):
    folder, cls, _ = hf_models["wav2vec2_base"]
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for i, w in enumerate(WAVS):
        sf.write(wavs / f"w{i}.wav", w.numpy(), 16000, subtype="FLOAT")
    out = tmp_path / "f"
    assert run("extract", "--checkpoint", f"hf:{folder}", "--input", wavs, "--out", out, "--layers", "0,-1",
               "--num-workers", "0", "--quiet") == 0
    meta = json.loads((out / "features.json").read_text())
    assert meta["backend"] == "hf" and meta["hf_class"] == "Wav2Vec2Model" and meta["padding"] == "unpadded"
    assert meta["layers"] == [0, 2] and "transformers" in meta["checkpoint_stamp"]
    store = FeatureStore(out)
    for i, w in enumerate(WAVS):
        ref = _reference(folder, cls, w)
        x = store[f"w{i}"]
        assert np.abs(x[0] - ref[0][0].numpy()).max() < TOL and np.abs(x[1] - ref[-1][0].numpy()).max() < TOL
    api = Emotion2Vec.from_checkpoint(f"hf:{folder}")
    utt = api.extract(WAVS[1].numpy(), sample_rate=16000)
    assert utt.shape == (32,) and np.abs(utt - store["w1"][1].mean(0)).max() < TOL
    # a resume never mixes backends: another source into the same folder is refused, naming the setting
    capsys.readouterr()
    assert run("extract", "--checkpoint", "fbank", "--input", wavs, "--out", out, "--num-workers", "0",
               "--quiet") == 2
    assert "backend is 'hf' there, 'fbank' now" in capsys.readouterr().err


def test_whisper_long_inputs_are_windowed_by_the_engine_or_refused_by_name(hf_models):
    folder, _, _ = hf_models["whisper"]
    backend = load_backend(f"hf:{folder}")
    assert backend.frame_rate == 50.0 and backend.num_layers == 3
    wav = torch.randn(16000 * 35, generator=torch.Generator().manual_seed(3)) * 0.1
    out = BatchedForward(backend, [2])([wav])[0]  # 30 s windows, stitched
    assert out.shape == (1, backend.num_frames(len(wav)), 32) and torch.isfinite(out).all()
    with pytest.raises(ConfigError, match="Whisper's encoder sees at most 30 s"):
        BatchedForward(backend, [2], chunk_seconds=40)([wav])


def test_hf_bad_inputs_are_named(hf_models, tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                   vocab_size=50)
    transformers.BertModel(bert).save_pretrained(tmp_path / "bert")
    with pytest.raises(CheckpointError, match=r"is a BertModel .*supported: Wav2Vec2Model \(wav2vec2\), HubertModel"):
        load_upstream(f"hf:{tmp_path / 'bert'}")
    with pytest.raises(CheckpointError, match="no config.json there"):
        load_upstream(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(CheckpointError, match="not a model"):
        load_upstream("opensmile:eGeMAPSv02")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(CheckpointError, match=r"pip install 'emotion2vec\[hf\]'"):
        load_upstream(f"hf:{hf_models['hubert_base'][0]}")


# ------------------------------------------------------------------------------------------------ openSMILE
@pytest.fixture(scope="module")
def smile():
    return pytest.importorskip("opensmile", reason="the opensmile extra is not installed")


@pytest.mark.filterwarnings("ignore:Segment too short")
def test_opensmile_frames_and_functionals(smile):
    g = torch.Generator().manual_seed(0)
    lld = load_backend("opensmile:eGeMAPSv02:lld")
    functionals = load_backend("opensmile:eGeMAPSv02")
    compare = load_backend("opensmile:ComParE_2016")
    assert (lld.dim, lld.frame_rate, functionals.dim, compare.dim) == (25, 100.0, 88, 6373)
    lengths = [799, 800, 801, 959, 960, 4321, 16000, 40000]
    batch = torch.zeros(len(lengths), max(lengths))
    for b, n in enumerate(lengths):
        batch[b, :n] = torch.randn(n, generator=g) * 0.1
    frames = lld.forward(batch, torch.tensor(lengths), [0])
    stats = functionals.forward(batch, torch.tensor(lengths), [0])
    direct = smile.Smile(smile.FeatureSet.eGeMAPSv02, smile.FeatureLevel.LowLevelDescriptors)
    direct_f = smile.Smile(smile.FeatureSet.eGeMAPSv02, smile.FeatureLevel.Functionals)
    for b, n in enumerate(lengths):
        x = direct.process_signal(batch[b, :n].numpy(), 16000).to_numpy()
        assert x.shape[0] == lld.num_frames(n)
        assert np.allclose(frames[0, b, :x.shape[0]].numpy(), np.nan_to_num(x), atol=1e-5)
        f = direct_f.process_signal(batch[b, :n].numpy(), 16000).to_numpy()[0]
        assert np.allclose(stats[0, b, 0].numpy(), np.nan_to_num(f), rtol=1e-5, atol=1e-5)
    assert float(stats[0, 0].abs().max()) == 0.0  # under 50 ms openSMILE has nothing: zeros, not NaN


def test_opensmile_extract_granularities_long_inputs_and_settings(smile, tmp_path, capsys):
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    g = np.random.default_rng(0)
    sf.write(wavs / "short.wav", (g.standard_normal(20000) * 0.1).astype(np.float32), 16000, subtype="FLOAT")
    long_wav = (g.standard_normal(16000 * 33) * 0.1).astype(np.float32)  # over --chunk-seconds: still read whole
    sf.write(wavs / "long.wav", long_wav, 16000, subtype="FLOAT")
    assert run("extract", "--checkpoint", "opensmile:eGeMAPSv02", "--input", wavs, "--out", tmp_path / "u",
               "--granularity", "utterance", "--num-workers", "0", "--quiet") == 0
    assert run("extract", "--checkpoint", "opensmile:eGeMAPSv02", "--input", wavs, "--out", tmp_path / "f",
               "--num-workers", "0", "--quiet") == 0
    utt, frm = FeatureStore(tmp_path / "u"), FeatureStore(tmp_path / "f")
    assert utt["short"].shape == (88,) and frm["short"].shape == (1, 88)
    whole = smile.Smile(smile.FeatureSet.eGeMAPSv02, smile.FeatureLevel.Functionals).process_signal(long_wav, 16000)
    assert np.allclose(utt["long"], whole.to_numpy()[0], rtol=1e-5, atol=1e-5)
    meta = json.loads((tmp_path / "u" / "features.json").read_text())
    assert (meta["backend"], meta["feature_set"], meta["level"]) == ("opensmile", "eGeMAPSv02", "functionals")
    assert meta["checkpoint_stamp"] == f"opensmile {smile.__version__}"
    capsys.readouterr()
    assert run("extract", "--checkpoint", "opensmile:eGeMAPSv02:lld", "--input", wavs, "--out", tmp_path / "u",
               "--granularity", "utterance", "--num-workers", "0", "--quiet") == 2
    assert "checkpoint is 'opensmile:eGeMAPSv02' there" in capsys.readouterr().err
    with pytest.raises(Exception, match="unknown feature set; choose one of .*ComParE_2016"):
        load_backend("opensmile:GeMAPS_typo")
    with pytest.raises(Exception, match="unknown level"):
        load_backend("opensmile:eGeMAPSv02:frames")


def test_missing_opensmile_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)
    with pytest.raises(Exception, match=r"pip install 'emotion2vec\[opensmile\]'"):
        load_backend("opensmile:eGeMAPSv02")


# ------------------------------------------------------------------------------------------------ recipes
@pytest.mark.parametrize("spec,name", [("hf:microsoft/wavlm-base-plus", "wavlm-base-plus"),
                                       ("hf:/models/w2v/", "w2v"),
                                       ("opensmile:eGeMAPSv02", "eGeMAPSv02"),
                                       ("opensmile:ComParE_2016:lld", "ComParE_2016_lld"),
                                       ("../checkpoints/audio_base_ls.pt", "audio_base_ls"),
                                       ("fbank", "fbank")])
def test_recipe_source_names(spec, name):
    script = f'source "{REPO}/recipes/common.sh"; CHECKPOINT="{spec}" source_name'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHON=sys.executable))
    assert out.stdout.strip() == name



def _table(rows: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = ["| upstream | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(f"{v:.1e}" for v in errors.values()) + " |" for name, errors in rows.items()]
    return "\n".join(lines)


if __name__ == "__main__":  # the parity tables of docs/upstreams.md: python tests/test_upstreams.py
    import tempfile

    import transformers

    from conftest import FIXTURES

    transformers.logging.set_verbosity_error()
    print("Max abs error, final output and every block, fp32 CPU:\n")
    print(_table({f"`{D2V1}` (pos_conv_depth 5)": data2vec1_errors(FIXTURES / D2V1,
                                                                 FIXTURES / "data2vec1_audio_reference.npz")}))
    with tempfile.TemporaryDirectory() as tmp:
        models = build_hf_models(Path(tmp))
        print("\nMax abs error over every hidden state, tiny random models, fp32 CPU:\n")
        print(_table({f"{cls.__name__} ({name}, padding: {policy})": hf_errors(folder, cls)
                      for name, (folder, cls, policy) in models.items()}))
