"""Checkpoints: golden vectors of a peer implementation, safe loading, strictness, conversion, layout policies."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from emotion2vec.io.audio import normalize_waveform
from emotion2vec.pretrain.init import adapt_layout
from emotion2vec.models.checkpoint import (CheckpointError, UntrustedCheckpointError, build_model,
                                    convert_checkpoint, load_model, read_checkpoint)
from emotion2vec.models.config import preset
from emotion2vec.models import Emotion2VecModel

TOL = 1e-5
FIXTURES = [("tiny_emotion2vec.pt", "tiny_reference.npz", True),
            ("legacy_data2vec2.pt", "legacy_reference.npz", False),
            ("funasr_emotion2vec", "funasr_reference.npz", True)]


def _inputs(ref, normalize):
    wavs = [torch.from_numpy(ref[f"wav{i}"]) for i in range(4)]
    return [normalize_waveform(w) if normalize else w for w in wavs]


def _compare(out, ref, i, cfg, rows=None):
    """Max abs error over x, utterance mean, and every main block's output and FFN output."""
    T = ref[f"x{i}"].shape[0]
    sl = slice(0, T)
    pick = (lambda t: t[rows, sl]) if rows is not None else (lambda t: t[0, sl])
    errs = [np.abs(pick(out.x).numpy() - ref[f"x{i}"]).max(),
            np.abs(pick(out.x).numpy().mean(0) - ref[f"utt{i}"]).max()]
    for j in range(cfg.depth):
        errs.append(np.abs(pick(out.layer_outputs[cfg.prenet_depth + j]).numpy() - ref[f"hidden{i}_{j}"]).max())
        errs.append(np.abs(pick(out.ffn_outputs[cfg.prenet_depth + j]).numpy() - ref[f"ffn{i}_{j}"]).max())
    return max(errs)


def _one_by_one_error(model, info, ref, normalize, reference: bool) -> float:
    with torch.no_grad():
        return max(_compare(model.set_attention_implementation("eager" if reference else "sdpa").extract_features(w[None], ffn=None), ref, i, info.config)
                   for i, w in enumerate(_inputs(ref, normalize)))


def _batched_error(model, info, ref, normalize) -> float:
    wavs = _inputs(ref, normalize)  # normalised one by one, then padded
    n = max(len(w) for w in wavs)
    batch, pad = torch.zeros(4, n), torch.ones(4, n, dtype=torch.bool)
    for i, w in enumerate(wavs):
        batch[i, :len(w)], pad[i, :len(w)] = w, False
    with torch.no_grad():
        out = model.extract_features(batch, pad, ffn=None)
    for i in range(4):
        assert int((~out.padding_mask[i]).sum()) == ref[f"x{i}"].shape[0]
    return max(_compare(out, ref, i, info.config, rows=i) for i in range(4))


@pytest.mark.parametrize("ckpt,ref_name,normalize", FIXTURES)
@pytest.mark.parametrize("reference", [False, True], ids=["sdpa", "reference"])
def test_golden_vectors_one_by_one(fixtures_dir, ckpt, ref_name, normalize, reference):
    model, info = load_model(fixtures_dir / ckpt)
    assert info.config.normalize is normalize  # comes from the checkpoint's task config
    assert _one_by_one_error(model, info, np.load(fixtures_dir / ref_name), normalize, reference) < TOL


@pytest.mark.parametrize("ckpt,ref_name,normalize", FIXTURES)
def test_golden_vectors_batched(fixtures_dir, ckpt, ref_name, normalize):
    model, info = load_model(fixtures_dir / ckpt)
    assert _batched_error(model, info, np.load(fixtures_dir / ref_name), normalize) < TOL


def test_formats_and_metadata(fixtures_dir):
    tiny = read_checkpoint(fixtures_dir / "tiny_emotion2vec.pt")
    legacy = read_checkpoint(fixtures_dir / "legacy_data2vec2.pt")  # cfg is a pickled DictConfig
    funasr = read_checkpoint(fixtures_dir / "funasr_emotion2vec")
    assert (tiny.source, legacy.source, funasr.source) == ("fairseq", "fairseq", "funasr")
    assert tiny.teacher is None and legacy.teacher is not None
    assert legacy.model["encoder.alibi_scale"].shape == (1, 1, 4, 1, 1)  # legacy 4-D tensor upgraded
    assert legacy.teacher["alibi_scale"].shape == (1, 1, 4, 1, 1)
    assert legacy.meta["num_updates"] == 1234
    assert (legacy.config.depth, legacy.config.prenet_depth, legacy.config.num_extra_tokens) == (3, 0, 0)
    assert (tiny.config.num_extra_tokens, tiny.config.norm_eps) == (3, 1e-5)
    for k, v in tiny.model.items():  # FunASR's re-saved file holds the same weights
        assert torch.equal(v, funasr.model[k])


def test_evil_pickle_is_refused_and_never_executed(fixtures_dir):
    evil = fixtures_dir / "evil.pt"
    code = ("import os, sys\nfrom emotion2vec.models.checkpoint import read_checkpoint, UntrustedCheckpointError\n"
            f"try:\n    read_checkpoint({str(evil)!r})\nexcept UntrustedCheckpointError as e:\n    print('REFUSED', e)\n"
            "print('EXECUTED' if os.environ.get('E2V_PICKLE_EXECUTED') else 'CLEAN')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "REFUSED" in out and "eval" in out and "--trust-checkpoint" in out
    assert out.strip().endswith("CLEAN")
    assert "E2V_PICKLE_EXECUTED" not in os.environ
    cli = subprocess.run([sys.executable, "-m", "emotion2vec", "extract", "--checkpoint", str(evil), "--input",
                          str(evil), "--out", "unused"], capture_output=True, text=True)
    assert cli.returncode == 2 and "refused to unpickle" in cli.stderr and "--trust-checkpoint" in cli.stderr


def _fairseq_like(fixtures_dir, tmp_path, edit):
    obj = torch.load(fixtures_dir / "tiny_emotion2vec.pt", weights_only=True)
    edit(obj["model"])
    path = tmp_path / "edited.pt"
    torch.save(obj, path)
    return path


def test_missing_or_mismatched_tensors_are_named(fixtures_dir, tmp_path):
    key = "blocks.1.mlp.fc1.weight"
    path = _fairseq_like(fixtures_dir, tmp_path, lambda m: m.pop(key))
    with pytest.raises(CheckpointError, match=r"missing tensor encoder\.blocks\.1\.feed_forward\.fc1\.weight \(384, 96\)"):
        load_model(path)
    path = _fairseq_like(fixtures_dir, tmp_path, lambda m: m.__setitem__(key, torch.zeros(10, 96)))
    with pytest.raises(CheckpointError, match=r"checkpoint shape \(10, 96\) != model shape \(384, 96\)"):
        load_model(path)
    path = _fairseq_like(fixtures_dir, tmp_path, lambda m: m.__setitem__("something.else", torch.zeros(1)))
    with pytest.raises(CheckpointError, match="something.else"):
        load_model(path)


def test_a_full_model_teacher_keeps_its_names_and_its_cnn_is_reported(fixtures_dir, tmp_path):
    """A teacher saved with ema_local_encoder holds the CNN too. Its keys used to be re-prefixed by slicing off
    'encoder.', turning feature_extractor.* into 'extractor.*' that init_from then dropped without a word."""
    from emotion2vec.models.config import preset as make_preset
    from emotion2vec.pretrain.distill import DistillationConfig, Emotion2VecPretrainer
    from emotion2vec.pretrain.init import init_from_checkpoint

    def add_cnn_to_teacher(m):  # the whole model but the decoder, as ema_local_encoder=True saves it
        m["_ema"] = {k: v.clone() for k, v in m.items() if ".decoder." not in k}

    path = _fairseq_like(fixtures_dir, tmp_path, add_cnn_to_teacher)
    ckpt = read_checkpoint(path)
    assert ckpt.teacher and not [k for k in ckpt.teacher if not k.startswith(("pos_conv", "alibi", "extra", "context",
                                                                                "prenet", "blocks"))]
    unused = ckpt.meta["teacher_unused"]
    assert unused and all(k.startswith(("feature_extractor.", "feature_projection.")) for k in unused)
    model = Emotion2VecPretrainer(ckpt.config, DistillationConfig(average_top_k_layers=ckpt.config.depth))
    report = init_from_checkpoint(model, str(path))
    assert any("outside the context encoder and not used" in line and "feature_extractor.layers.0" in line
               for line in report), report


def test_key_rules_map_every_family_and_refuse_unknown_keys():
    from emotion2vec.models.checkpoint import KEY_RULES, official_to_ours

    examples = {
        "modality_encoders.AUDIO.local_encoder.conv_layers.3.0.weight": "feature_extractor.layers.3.conv.weight",
        "modality_encoders.AUDIO.local_encoder.conv_layers.3.2.1.bias": "feature_extractor.layers.3.norm.bias",
        "modality_encoders.AUDIO.project_features.1.weight": "feature_projection.norm.weight",
        "modality_encoders.AUDIO.project_features.2.bias": "feature_projection.linear.bias",
        "modality_encoders.AUDIO.relative_positional_encoder.1.0.weight": "encoder.pos_conv.layers.0.conv.weight",
        "modality_encoders.AUDIO.relative_positional_encoder.0.weight": "encoder.pos_conv.pre_norm.weight",
        "modality_encoders.AUDIO.relative_positional_encoder.1.1.0.weight": "encoder.pos_conv.layers.0.conv.weight",
        "modality_encoders.AUDIO.alibi_scale": "encoder.alibi_scale",
        "modality_encoders.AUDIO.extra_tokens": "encoder.extra_tokens",
        "modality_encoders.AUDIO.context_encoder.norm.bias": "encoder.context_norm.bias",
        "modality_encoders.AUDIO.context_encoder.blocks.2.attn.qkv.weight": "encoder.prenet.2.attention.qkv.weight",
        "blocks.7.mlp.fc2.bias": "encoder.blocks.7.feed_forward.fc2.bias",
        "module.blocks.0.norm1.weight": "encoder.blocks.0.attention_norm.weight",
        "modality_encoders.AUDIO.decoder.blocks.1.0.weight": "decoder.layers.1.conv.weight",
        "modality_encoders.AUDIO.decoder.proj.weight": "decoder.proj.weight",
    }
    for theirs, ours in examples.items():
        assert official_to_ours(theirs) == ours, theirs
    # every rule is exercised by an example above
    used = {i for i, (pattern, _) in enumerate(KEY_RULES) for k in examples
            if pattern.match(k.removeprefix("module."))}
    assert used == set(range(len(KEY_RULES)))
    for unknown in ("blocks.0.attn.q_proj.weight", "modality_encoders.AUDIO.mask_emb", "final_proj.weight"):
        assert official_to_ours(unknown) is None


def test_only_the_decoder_may_be_missing(fixtures_dir, tmp_path):
    def drop_decoder(m):
        for k in [k for k in m if ".decoder." in k]:
            m.pop(k)

    model, _ = load_model(_fairseq_like(fixtures_dir, tmp_path, drop_decoder))
    assert model.decoder is None
    ref = np.load(fixtures_dir / "tiny_reference.npz")
    with torch.no_grad():
        x = model.extract_features(normalize_waveform(torch.from_numpy(ref["wav0"]))[None]).x[0].numpy()
    assert np.abs(x - ref["x0"]).max() < TOL


def test_not_a_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        read_checkpoint(tmp_path / "garbage.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="--preset"):
        read_checkpoint(tmp_path / "bare.pt")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(CheckpointError, match="neither"):
        read_checkpoint(tmp_path / "emptydir")


@pytest.mark.parametrize("ckpt,ref_name,normalize", FIXTURES)
def test_convert_round_trip(fixtures_dir, tmp_path, ckpt, ref_name, normalize):
    out = tmp_path / "converted"
    result = subprocess.run([sys.executable, "-m", "emotion2vec", "convert", str(fixtures_dir / ckpt), str(out)],
                            capture_output=True, text=True, check=True)
    printed = dict(line.split("  ")[::-1] for line in result.stdout.strip().splitlines())
    for path, digest in printed.items():  # the printed SHA-256 are those of the written files
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
    assert (out / "teacher.safetensors").exists() == (ckpt == "legacy_data2vec2.pt")
    original, a = load_model(fixtures_dir / ckpt)
    converted, b = load_model(out)
    assert b.source == "emotion2vec" and b.config == a.config
    ref = np.load(fixtures_dir / ref_name)
    for wav in _inputs(ref, normalize):
        with torch.no_grad():
            assert torch.equal(original.extract_features(wav[None]).x, converted.extract_features(wav[None]).x)
    if a.teacher:
        assert all(torch.equal(a.teacher[k], b.teacher[k]) for k in a.teacher)


def test_remap_policy_preserves_the_encoder_function():
    torch.manual_seed(0)
    src_cfg = preset("small", prenet_depth=0, depth=4, num_extra_tokens=0)
    dst_cfg = preset("small", prenet_depth=1, depth=3, num_extra_tokens=0)
    src = Emotion2VecModel(src_cfg).eval()
    state, notes = adapt_layout(src.state_dict(), src_cfg, dst_cfg, "remap")
    dst = Emotion2VecModel(dst_cfg).eval()
    dst.load_state_dict(state)
    wav = torch.randn(1, 20000)
    with torch.no_grad():
        assert torch.allclose(src.extract_features(wav).x, dst.extract_features(wav).x, atol=1e-6)
    assert notes and "remapped 0+4 blocks onto 1+3" in notes[0]
    same, _ = adapt_layout(src.state_dict(), src_cfg, dst_cfg, "fairseq")
    assert set(same) == set(src.state_dict())  # names kept: blocks.3 has no home in a 1+3 model
    with pytest.raises(ValueError, match="layout policy"):
        adapt_layout(src.state_dict(), src_cfg, dst_cfg, "bogus")


def golden_table(fixtures) -> str:
    """The measured tolerance per fixture as a markdown table (`python tests/test_checkpoint.py`)."""
    rows = ["| fixture | one by one, SDPA | one by one, reference | batched (4, padded) |", "|---|---:|---:|---:|"]
    for ckpt, ref_name, normalize in FIXTURES:
        model, info = load_model(fixtures / ckpt)
        ref = np.load(fixtures / ref_name)
        errs = [_one_by_one_error(model, info, ref, normalize, reference) for reference in (False, True)]
        errs.append(_batched_error(model, info, ref, normalize))
        rows.append(f"| {ckpt} | " + " | ".join(f"{e:.2e}" for e in errs) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    from conftest import FIXTURES as FIXTURES_DIR

    print(golden_table(FIXTURES_DIR))
