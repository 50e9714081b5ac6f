"""Speed paths, checked for correctness (never for time): dtype "auto" with the CPU capability mocked, bf16 weights
for inference, ONNX export + ONNX Runtime (golden checkpoints, padding, int8), the pretraining speed switches, and
resumes that refuse to mix backends or dtypes."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import emotion2vec
from emotion2vec import device as dev
from emotion2vec.extract import ExtractionError
from emotion2vec.extract.backends import ModelBackend, load_backend, resolve_dtype
from emotion2vec.extract.engine import parse_layers
from emotion2vec.extract.run import run_extraction
from emotion2vec.io.audio import normalize_waveform
from emotion2vec.models.checkpoint import load_model
from emotion2vec.models.config import ConfigError, preset
from emotion2vec.models import inference
from emotion2vec.models.encoder import Emotion2VecModel
from emotion2vec.pretrain.distill import DistillationConfig, Emotion2VecPretrainer
from emotion2vec.pretrain.masking import block_mask

from conftest import FIXTURES, require

REPO = Path(__file__).resolve().parents[1]
GOLDEN = [("tiny_emotion2vec.pt", "tiny_reference.npz"), ("legacy_data2vec2.pt", "legacy_reference.npz"),
          ("funasr_emotion2vec", "funasr_reference.npz"),
          ("funasr_emotion2vec_plus", "plus_reference.npz")]  # the emotion2vec+ folder: its encoder (no head)
ONNX_TOL = 1e-4  # ONNX Runtime fp32 vs the golden vectors / torch fp32
INT8_REL_L2 = 0.10  # the int8 graph's feature error bound (relative L2 per utterance, vs fp32): docs/performance.md
BF16_REL_L2 = 0.05  # bf16 vs fp32 on the tiny random-weight golden model (base geometry: docs/performance.md)


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def accel(monkeypatch):
    """Set what this process's CPU is said to accelerate: accel("AMX"), accel(None)."""

    def set_(value):
        monkeypatch.setattr(dev, "cpu_bf16_acceleration", lambda: value)

    return set_


# ----------------------------------------------------------------------------------------- dtype selection
@pytest.mark.parametrize("flags,expected", [
    ({"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"}, "AMX"),
    ({"avx512f", "avx512_bf16"}, "AVX512-BF16"),
    ({"avx512f", "avx2"}, None),
    ({"amx_tile"}, None),  # tiles without the bf16 unit
    (set(), None),
])
def test_bf16_acceleration_from_cpu_flags(flags, expected):
    assert dev.bf16_acceleration_from_flags(flags) == expected


@pytest.mark.parametrize("capability,expected", [("AMX", torch.bfloat16), ("AVX512-BF16", torch.bfloat16),
                                                 (None, torch.float32)])
def test_auto_picks_bf16_only_where_the_cpu_accelerates_it(accel, capability, expected):
    accel(capability)
    assert dev.resolve_compute_dtype("auto", "cpu") == expected
    assert resolve_dtype("auto", "cpu") == expected
    # explicit names are taken as given, whatever the CPU
    assert dev.resolve_compute_dtype("float32", "cpu") == torch.float32
    assert dev.resolve_compute_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype("float16") == torch.float16


def test_auto_on_a_gpu_without_cuda_is_float32_and_bad_names_are_refused(accel):
    accel("AMX")
    if not torch.cuda.is_available():
        assert dev.resolve_compute_dtype("auto", "cuda") == torch.float32
    with pytest.raises(ConfigError, match="'bf16'"):
        dev.resolve_compute_dtype("bf16", "cpu")
    with pytest.raises(ExtractionError, match="'half'"):
        resolve_dtype("half")


def test_default_stays_float32(fixtures_dir, accel):
    accel("AMX")
    backend = load_backend(str(fixtures_dir / "tiny_emotion2vec.pt"))
    assert backend.settings()["dtype"] == "float32"
    assert emotion2vec.Emotion2Vec.from_checkpoint(fixtures_dir / "tiny_emotion2vec.pt").backend.dtype == torch.float32


# The rules of every "auto", as docs/performance.md states them beside the tables they come from.
@pytest.mark.parametrize("capability,width,dtype,precision", [
    ("AMX", 768, torch.bfloat16, "bf16"),          # base geometry: bf16 2.7x faster (extract), 1.5x (finetune_step)
    ("AMX", 1024, torch.bfloat16, "bf16"),
    ("AMX", 128, torch.bfloat16, "bf16"),          # the small preset: bf16 1.3-1.4x (forward), 1.07-1.15x (finetune)
    ("AVX512-BF16", 768, torch.bfloat16, "bf16"),  # measured at the base width only
    ("AVX512-BF16", 128, torch.float32, "fp32"),   # not measured without AMX: stays fp32
    ("AVX512-BF16", 512, torch.float32, "fp32"),
    (None, 768, torch.float32, "fp32"),            # no bf16 units: emulated bf16 is slower
])
def test_auto_dtype_and_precision_rules_on_a_cpu(accel, capability, width, dtype, precision):
    from emotion2vec.finetune.run import resolve_precision

    accel(capability)
    assert dev.BF16_MIN_WIDTH == 768
    assert dev.auto_dtype("cpu", width) == resolve_dtype("auto", "cpu", width) == dtype
    assert dev.auto_training_precision("cpu", width) == resolve_precision("auto", torch.device("cpu"), width) == precision


@pytest.mark.parametrize("capability,autocast,expected", [
    ("AMX", torch.bfloat16, "eager"),          # bf16 on AMX: the explicit softmax is faster (pretrain_step)
    ("AMX", torch.float32, "sdpa"),            # fp32: SDPA faster
    ("AVX512-BF16", torch.bfloat16, "sdpa"),   # bf16 without AMX: SDPA faster
    (None, torch.float32, "sdpa"),
])
def test_auto_attention_rule_for_pretraining(accel, capability, autocast, expected):
    accel(capability)
    assert dev.auto_attention("cpu", autocast) == expected
    assert dev.auto_attention("cuda", torch.bfloat16) == dev.auto_attention("cuda", torch.float16) == "sdpa"


@pytest.mark.parametrize("capability,recorded", [("AMX", "bfloat16"), ("AVX512-BF16", "float32"), (None, "float32")])
def test_dtype_auto_in_the_cli_and_api_records_what_it_chose(fixtures_dir, tmp_path, accel, capability, recorded):
    """The tiny fixture is 128 wide: auto is bf16 with AMX, fp32 with AVX512-BF16 alone (not measured there)."""
    accel(capability)
    wavs = _wavs(tmp_path)
    from emotion2vec.cli import main

    assert main(["extract", "--checkpoint", str(fixtures_dir / "tiny_emotion2vec.pt"), "--input", str(wavs),
                 "--out", str(tmp_path / "f"), "--dtype", "auto", "--quiet"]) == 0
    assert json.loads((tmp_path / "f" / "features.json").read_text())["dtype"] == recorded
    api = emotion2vec.Emotion2Vec.from_checkpoint(fixtures_dir / "tiny_emotion2vec.pt", dtype="auto")
    assert str(api.backend.dtype) == f"torch.{recorded}"


def test_dtype_auto_picks_bf16_for_a_base_width_model(fixtures_dir, accel):
    accel("AVX512-BF16")
    wide = Emotion2VecModel(preset("small", embed_dim=768, num_heads=4), with_decoder=False)
    assert emotion2vec.Emotion2Vec(wide, dtype="auto").backend.settings()["dtype"] == "bfloat16"
    assert load_backend(str(fixtures_dir / "funasr_emotion2vec"), dtype="auto").settings()["dtype"] == "float32"


# ----------------------------------------------------------------------------------------- bf16 inference
def _wavs(tmp_path: Path, seconds=(1.0, 1.7, 2.3)) -> Path:
    folder = tmp_path / "wavs"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i, s in enumerate(seconds):
        t = np.arange(int(s * 16000)) / 16000
        x = np.sin(2 * np.pi * (120 + 30 * np.sin(3 * t)) * t) * (0.5 + 0.4 * np.sin(2 * np.pi * 4 * t))
        sf.write(folder / f"u{i}.wav", (0.3 * x + 0.01 * rng.standard_normal(len(t))).astype(np.float32), 16000)
    return folder


def _golden_input(fixtures_dir, k=1):
    return normalize_waveform(torch.from_numpy(np.load(fixtures_dir / "tiny_reference.npz")[f"wav{k}"]))[None]


def test_bf16_inference_layout(fixtures_dir):
    """Large matrix multiplies in bf16 with their weights stored once; small layers, norms and scales in fp32."""
    model, _ = load_model(fixtures_dir / "tiny_emotion2vec.pt")
    ModelBackend(model, torch.device("cpu"), torch.bfloat16)
    cnn = model.feature_extractor.layers
    assert model.encoder.blocks[0].feed_forward.fc1.weight.dtype == torch.bfloat16
    assert model.encoder.prenet[0].attention.qkv.weight.dtype == torch.bfloat16
    assert [layer.conv.weight.dtype for layer in cnn] == [torch.float32] + [torch.bfloat16] * 4 + [torch.float32] * 2
    for fp32 in (model.feature_projection.linear, model.encoder.pos_conv.layers[0].conv,
                 model.encoder.blocks[0].final_norm, model.encoder.context_norm, cnn[1].norm):
        assert fp32.weight.dtype == torch.float32
    assert model.encoder.alibi_scale.dtype == torch.float32
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats = model.feature_projection(torch.randn(1, 7, cnn[-1].conv.weight.shape[0]))
        assert feats.dtype == torch.float32 and model.encoder.pos_conv(feats).dtype == torch.float32


def test_bf16_cpu_kernels_are_used_and_change_little(fixtures_dir, monkeypatch):
    """On a CPU with oneDNN the bf16 model runs prepacked / fused kernels; without them the plain bf16 layers. Both
    stay close to each other (the kernels round at the same places or fewer)."""
    x = _golden_input(fixtures_dir)
    n, everything = torch.tensor([x.shape[1]]), list(range(3))
    packed = load_backend(str(fixtures_dir / "tiny_emotion2vec.pt"), dtype="bfloat16")
    if not inference.onednn_kernels():
        pytest.skip("this torch build has no oneDNN prepacked bf16 kernels")
    block = packed.model.encoder.blocks[0]
    assert isinstance(block.attention.qkv.forward, inference._PackedLinear)
    assert isinstance(block.feed_forward.forward, inference._FusedFeedForward)
    cnn = packed.model.feature_extractor.layers
    assert isinstance(cnn[0].forward, inference._FoldedFirstConv) and cnn[0].forward.out_dtype == torch.bfloat16
    assert [type(layer.forward) for layer in cnn[1:5]] == [inference._PackedConvBlock] * 4
    assert cnn[4].forward.out_dtype == torch.float32  # the next layer is an fp32 one
    monkeypatch.setattr(inference, "onednn_kernels", lambda: False)
    plain = load_backend(str(fixtures_dir / "tiny_emotion2vec.pt"), dtype="bfloat16")
    assert not isinstance(plain.model.encoder.blocks[0].attention.qkv.forward, inference._PackedLinear)
    a, b = packed.forward(x, n, everything), plain.forward(x, n, everything)
    assert rel_l2(a, b) < 0.01


def test_folded_first_cnn_layer_is_the_fp32_layer(fixtures_dir):
    """LayerNorm folded into the first CNN layer's weights, GELU fused, split bf16 products: fp32 accuracy."""
    if not inference.onednn_kernels():
        pytest.skip("this torch build has no oneDNN prepacked bf16 kernels")
    model, _ = load_model(fixtures_dir / "funasr_emotion2vec")
    layer = model.eval().feature_extractor.layers[0]
    x = torch.randn(2, 4000, 1)
    with torch.inference_mode():
        ref = layer(x).double()
        fp32 = inference._FoldedFirstConv(layer, torch.float32)(x).double()
        bf16 = inference._FoldedFirstConv(layer, torch.bfloat16)(x)
    assert bf16.dtype == torch.bfloat16
    assert (fp32 - ref).abs().max() < 1e-5
    # bf16 output: no error beyond rounding the fp32 result to bf16
    assert torch.equal(bf16, ref.to(torch.bfloat16)) or rel_l2(bf16.double(), ref) <= 1.01 * rel_l2(
        ref.to(torch.bfloat16).double(), ref)


def test_cnn_per_input_in_tiles_gives_the_batched_frames(fixtures_dir):
    model, _ = load_model(fixtures_dir / "funasr_emotion2vec")
    model.eval()
    torch.manual_seed(0)
    lengths = torch.tensor([41_000, 16_000, 9_000, 300])  # the last one is shorter than one frame
    wav = torch.randn(4, 41_000) * (torch.arange(41_000)[None] < lengths[:, None])
    pad = torch.arange(41_000)[None] >= lengths[:, None]
    with torch.inference_mode():
        a = model.extract_features(wav, pad, layers=[-1])
        fe = model.feature_extractor
        tiled = fe.forward_tiled(wav[0], tile_frames=7)
        assert (tiled - fe(wav[:1])[0]).abs().max() < 1e-5 and tiled.shape[0] == 127
        feats, mask = model.local_features_per_input(wav, lengths, tile_frames=7)
        b = model.extract_features(wav, lengths=lengths, layers=[-1])
    frames = fe.output_lengths(lengths)
    assert frames.tolist() == [127, 49, 27, 0] and torch.equal(mask, a.padding_mask)
    assert feats[1, 49:].abs().max() == 0 and fe.receptive_field == 400 and fe.frame_stride == 320
    for i, n in enumerate(frames.tolist()[:3]):
        assert (a.x[i, :n] - b.x[i, :n]).abs().max() < 1e-5


def test_bf16_inference_is_closer_to_fp32_than_plain_autocast(fixtures_dir):
    x = _golden_input(fixtures_dir, 3)
    model, _ = load_model(fixtures_dir / "tiny_emotion2vec.pt")
    with torch.inference_mode():
        fp32 = model.extract_features(x, layers=[-1], ffn=()).x.double()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model.extract_features(x, layers=[-1], ffn=()).x.double()
    bf16 = ModelBackend(model, torch.device("cpu"), torch.bfloat16).forward(x, torch.tensor([x.shape[1]]), [2])[0]
    assert rel_l2(bf16.double(), fp32) < 0.8 * rel_l2(autocast, fp32)


def test_bf16_features_stay_close_to_fp32(fixtures_dir):
    ref = np.load(fixtures_dir / "tiny_reference.npz")
    backend = load_backend(str(fixtures_dir / "tiny_emotion2vec.pt"), dtype="bfloat16")
    for i in range(4):
        x = normalize_waveform(torch.from_numpy(ref[f"wav{i}"]))[None]
        feats = backend.forward(x, torch.tensor([x.shape[1]]), [backend.num_layers - 1])[0, 0].numpy()
        assert feats.dtype == np.float32
        assert rel_l2(feats, ref[f"x{i}"]) < BF16_REL_L2


# ----------------------------------------------------------------------------------------- int8 in torch
needs_int8 = pytest.mark.skipif(not inference.int8_kernels(), reason="this torch build lacks oneDNN's int8 linear")
INT8_TORCH_REL_L2 = 0.02  # documented bound of --dtype int8 (frame level, relative L2 per utterance, vs fp32)


@needs_int8
def test_int8_linear_matches_its_fp32_product_within_quantisation_error():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(30, 64)
    for out_dtype, gelu in ((torch.float32, False), (torch.bfloat16, True)):
        y = inference._Int8Linear(linear, out_dtype, gelu=gelu)(x)
        ref = linear(x)
        ref = torch.nn.functional.gelu(ref) if gelu else ref
        assert y.dtype == out_dtype and 1e-4 < rel_l2(y.float().detach(), ref.detach()) < 0.02


@needs_int8
@pytest.mark.parametrize("bf16_units", [True, False])
def test_int8_features_stay_within_their_bound(fixtures_dir, accel, bf16_units):
    """int8 Transformer linears (+ bf16 elsewhere where the CPU has bf16 units, else fp32) on the golden
    FunASR model (96 wide), against our fp32, frame level on the golden waveforms."""
    accel("AMX" if bf16_units else None)
    ref = np.load(fixtures_dir / "funasr_reference.npz")
    fp32 = load_backend(str(fixtures_dir / "funasr_emotion2vec"))
    int8 = load_backend(str(fixtures_dir / "funasr_emotion2vec"), dtype="int8")
    block = int8.model.encoder.blocks[0]
    assert isinstance(block.attention.qkv.forward, inference._Int8Linear)
    assert int8.autocast == (torch.bfloat16 if bf16_units else None) and int8.settings()["dtype"] == "int8"
    for i in range(4):
        x = normalize_waveform(torch.from_numpy(ref[f"wav{i}"]))[None]
        n = torch.tensor([x.shape[1]])
        a, b = int8.forward(x, n, [-1 % int8.num_layers])[0, 0], fp32.forward(x, n, [-1 % int8.num_layers])[0, 0]
        assert a.dtype == torch.float32 and 1e-4 < rel_l2(a, b) < INT8_TORCH_REL_L2


def test_int8_is_refused_where_it_does_not_run(fixtures_dir, tmp_path):
    with pytest.raises(ExtractionError, match="int8 runs on a CPU"):
        resolve_dtype("int8", "cuda")
    if inference.int8_kernels():
        with pytest.raises(ExtractionError, match="data2vec1"):
            load_backend(str(fixtures_dir / "data2vec1_audio.pt"), dtype="int8")


# ----------------------------------------------------------------------------------------- ONNX
needs_ort = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnx / onnxruntime are not installed (pip install 'emotion2vec[onnx]'; make test installs them)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every golden checkpoint exported once with all layers (fp32), and the tiny one in int8."""
    from emotion2vec.extract.export import export_onnx

    require(FIXTURES, "golden checkpoint fixtures")
    out = tmp_path_factory.mktemp("onnx")
    graphs = {}
    for ckpt, _ in GOLDEN:
        graphs[ckpt] = export_onnx(FIXTURES / ckpt, out / f"{ckpt}.onnx", layers="all")
    graphs["int8"] = export_onnx(FIXTURES / "tiny_emotion2vec.pt", out / "int8.onnx", layers="-1", quantize="int8")
    return graphs


@needs_ort
@pytest.mark.parametrize("ckpt,ref_name", GOLDEN)
def test_onnx_matches_the_golden_vectors_one_by_one(fixtures_dir, exported, ckpt, ref_name):
    from emotion2vec.extract.onnx import OnnxBackend

    info = exported[ckpt]
    assert info["max_abs_error"] < ONNX_TOL and info["quantize"] == "none"
    backend = OnnxBackend(info["path"])
    ref = np.load(fixtures_dir / ref_name)
    prenet = backend.cfg.prenet_depth
    for i in range(4):
        w = torch.from_numpy(ref[f"wav{i}"])
        x = (normalize_waveform(w) if backend.normalize else w)[None]
        layers = list(range(backend.num_layers))
        feats = backend.forward(x, torch.tensor([x.shape[1]]), layers)[:, 0].numpy()
        assert feats.shape[1] == ref[f"x{i}"].shape[0] == backend.num_frames(x.shape[1])
        assert np.abs(feats[-1] - ref[f"x{i}"]).max() < ONNX_TOL
        for j in range(backend.cfg.depth):
            assert np.abs(feats[prenet + j] - ref[f"hidden{i}_{j}"]).max() < ONNX_TOL, (i, j)


@needs_ort
@pytest.mark.parametrize("ckpt,ref_name", GOLDEN)
def test_onnx_batched_equals_one_by_one(fixtures_dir, exported, ckpt, ref_name):
    """The padding mask lives in the graph: a padded batch gives each input's own features."""
    from emotion2vec.extract.onnx import OnnxBackend

    backend = OnnxBackend(exported[ckpt]["path"])
    ref = np.load(fixtures_dir / ref_name)
    wavs = [torch.from_numpy(ref[f"wav{i}"]) for i in range(4)]
    wavs = [normalize_waveform(w) if backend.normalize else w for w in wavs]
    lengths = torch.tensor([len(w) for w in wavs])
    batch = torch.zeros(4, int(lengths.max()))
    for i, w in enumerate(wavs):
        batch[i, :len(w)] = w
        batch[i, len(w):] = 5.0  # whatever lies in the padding must not matter
    last = [backend.num_layers - 1]
    out = backend.forward(batch, lengths, last)[0]
    for i, w in enumerate(wavs):
        alone = backend.forward(w[None], lengths[i:i + 1], last)[0, 0]
        T = backend.num_frames(len(w))
        assert torch.abs(out[i, :T] - alone).max() < 1e-5
        assert np.abs(out[i, :T].numpy() - ref[f"x{i}"]).max() < ONNX_TOL


@needs_ort
def test_onnx_int8_stays_within_its_documented_error(fixtures_dir, exported):
    from emotion2vec.extract.onnx import OnnxBackend

    info = exported["int8"]
    assert info["quantize"] == "int8" and info["matmuls_int8"] == 13  # projection + 3 blocks x 4 linear layers
    assert info["bytes"] < 0.6 * exported["tiny_emotion2vec.pt"]["bytes"]
    backend = OnnxBackend(info["path"])
    assert backend.settings() == {"backend": "onnxruntime", "dtype": "int8", "attention": None}
    ref = np.load(fixtures_dir / "tiny_reference.npz")
    errors = []
    for i in range(4):
        x = normalize_waveform(torch.from_numpy(ref[f"wav{i}"]))[None]
        feats = backend.forward(x, torch.tensor([x.shape[1]]), [backend.num_layers - 1])[0, 0].numpy()
        errors.append(rel_l2(feats, ref[f"x{i}"]))
    assert 0 < max(errors) < INT8_REL_L2  # int8 changes the features, within the bound


@needs_ort
def test_export_refuses_what_it_cannot_export_by_name(fixtures_dir, tmp_path):
    """data2vec (v1) is not an emotion2vec / data2vec 2.0 graph: export says so and writes nothing."""
    from emotion2vec.extract.export import export_onnx

    with pytest.raises(ExtractionError, match="ONNX export supports emotion2vec / data2vec 2.0 models, not "
                                              "Data2Vec1Model"):
        export_onnx(fixtures_dir / "data2vec1_audio.pt", tmp_path / "d2v1.onnx")
    assert not (tmp_path / "d2v1.onnx").exists()


@needs_ort
def test_int8_export_leaves_nothing_in_the_working_directory(fixtures_dir, tmp_path, monkeypatch):
    """ONNX Runtime's quantiser writes debug copies into the working directory when its shape inference fails (it
    does on dynamic lengths); an export must leave only its own output, also with a relative path."""
    from emotion2vec.extract.export import export_onnx

    monkeypatch.chdir(tmp_path)
    export_onnx(fixtures_dir / "tiny_emotion2vec.pt", "graphs/int8.onnx", quantize="int8")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["graphs", "graphs/int8.onnx"]
    assert os.getcwd() == str(tmp_path)


@needs_ort
def test_onnx_layers_dtype_and_device_checks(fixtures_dir, exported, tmp_path):
    from emotion2vec.extract.onnx import OnnxBackend

    int8 = OnnxBackend(exported["int8"]["path"])  # exported with the last layer only
    x = torch.zeros(1, 16000)
    with pytest.raises(ExtractionError, match=r"layer\(s\) \[0\] were not exported .* \[2\]"):
        int8.forward(x, torch.tensor([16000]), [0])
    graph = exported["tiny_emotion2vec.pt"]["path"]
    with pytest.raises(ExtractionError, match="precision is fixed when it is exported"):
        load_backend(graph, dtype="bfloat16")
    with pytest.raises(ExtractionError, match="CPU execution provider"):
        load_backend(graph, device="cuda")
    with pytest.raises(ExtractionError, match="run it with --backend onnxruntime"):
        load_backend(graph, backend="torch")
    assert load_backend(graph, dtype="auto").name == "onnxruntime"  # auto: nothing to choose for a fixed graph
    (tmp_path / "foreign.onnx").write_bytes(b"not a graph")
    with pytest.raises(ExtractionError, match="not an ONNX graph written by `emotion2vec export`"):
        OnnxBackend(tmp_path / "foreign.onnx")


@needs_ort
def test_export_cli_then_extract_with_onnxruntime(fixtures_dir, tmp_path, capsys):
    from emotion2vec.cli import main

    graph = tmp_path / "tiny.onnx"
    assert main(["export", str(fixtures_dir / "legacy_data2vec2.pt"), "--onnx", str(graph), "--layers", "0,-1"]) == 0
    assert "max abs difference" in capsys.readouterr().out
    wavs = _wavs(tmp_path)
    assert main(["extract", "--checkpoint", str(graph), "--input", str(wavs), "--out", str(tmp_path / "onnx"),
                 "--layers", "-1", "--granularity", "utterance", "--quiet"]) == 0
    assert main(["extract", "--checkpoint", str(fixtures_dir / "legacy_data2vec2.pt"), "--input", str(wavs),
                 "--out", str(tmp_path / "torch"), "--granularity", "utterance", "--quiet"]) == 0
    for f in sorted((tmp_path / "torch").glob("*.npy")):
        assert np.abs(np.load(f) - np.load(tmp_path / "onnx" / f.name)).max() < ONNX_TOL
    meta = json.loads((tmp_path / "onnx" / "features.json").read_text())
    assert (meta["backend"], meta["dtype"]) == ("onnxruntime", "float32")


@needs_ort
def test_resume_refuses_mixing_backends_or_dtypes(fixtures_dir, exported, tmp_path):
    wavs = _wavs(tmp_path)
    tiny = str(fixtures_dir / "tiny_emotion2vec.pt")
    out = tmp_path / "feats"
    layers = parse_layers(-1, 3)

    def extract(backend, name):
        return run_extraction([str(wavs)], out, backend, layers, checkpoint_name=name, progress=False,
                              log=lambda m: None)

    assert extract(load_backend(tiny), tiny).extracted == 3
    with pytest.raises(ExtractionError, match="dtype is 'float32' there, 'bfloat16' now"):
        extract(load_backend(tiny, dtype="bfloat16"), tiny)
    with pytest.raises(ExtractionError, match="backend is 'emotion2vec' there, 'onnxruntime' now"):
        extract(load_backend(exported["tiny_emotion2vec.pt"]["path"]), tiny)
    with pytest.raises(ExtractionError, match="dtype is 'float32' there, 'int8' now"):
        extract(load_backend(exported["int8"]["path"]), tiny)
    assert extract(load_backend(tiny), tiny).skipped == 3  # the same settings resume


# ----------------------------------------------------------------------------------------- pretraining
def _step(distill: DistillationConfig, seed: int = 0):
    torch.manual_seed(seed)
    model = Emotion2VecPretrainer(preset("small"), distill).train()
    n = 24000
    mask = torch.from_numpy(block_mask(2 * distill.clone_batch, model.cfg.num_frames(n),
                                       rng=np.random.default_rng(0)))
    out = model(torch.randn(2, n, generator=torch.Generator().manual_seed(1)), mask)
    loss = sum(out.losses.values()) / out.sample_size
    loss.backward()
    return model, float(loss.detach())


def test_pretraining_attention_auto_follows_the_rule_and_explicit_choices_hold(accel):
    accel("AMX")
    model, _ = _step(DistillationConfig(clone_batch=2, average_top_k_layers=3))  # fp32 on a CPU: SDPA
    assert model.distill.attention_implementation == "auto"
    assert model.attention_implementation == model.teacher.module.attention_implementation == "sdpa"
    model, _ = _step(DistillationConfig(clone_batch=2, average_top_k_layers=3, compute_dtype="bfloat16"))
    assert model.attention_implementation == model.teacher.module.attention_implementation == "eager"
    assert model.attention_for(torch.device("cuda")) == "sdpa"
    model, _ = _step(DistillationConfig(clone_batch=2, average_top_k_layers=3, attention_implementation="sdpa"))
    assert model.attention_implementation == model.teacher.module.attention_implementation == "sdpa"
    model.set_attention_implementation("eager")  # an explicit call becomes the setting
    assert model.distill.attention_implementation == "eager"


def test_pretraining_compute_dtype_auto_follows_the_cpu(accel):
    distill = DistillationConfig(clone_batch=2, average_top_k_layers=3, compute_dtype="auto")
    model = Emotion2VecPretrainer(preset("small"), distill)
    accel("AVX512-BF16")
    assert model.autocast_dtype(torch.device("cpu")) == torch.bfloat16
    accel(None)
    assert model.autocast_dtype(torch.device("cpu")) is None
    model.half()  # fairseq's fp16 / bf16 modes cast the whole model: no autocast on top
    accel("AMX")
    assert model.autocast_dtype(torch.device("cpu")) is None
    with pytest.raises(ConfigError, match="compute_dtype='fp8'"):
        DistillationConfig(compute_dtype="fp8").validate(preset("emotion2vec_base"))
    with pytest.raises(ConfigError, match="attention_implementation='flash'"):
        DistillationConfig(attention_implementation="flash").validate(preset("emotion2vec_base"))


def test_pretraining_bf16_step_keeps_fp32_weights_teacher_and_loss():
    base = DistillationConfig(clone_batch=2, average_top_k_layers=3)
    ref_model, ref = _step(base)
    model, loss = _step(dataclasses.replace(base, compute_dtype="bfloat16"))
    assert np.isfinite(loss) and abs(loss - ref) < 0.05 * abs(ref)  # same objective, bf16 matrix multiplies
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    assert next(model.teacher.module.parameters()).dtype == torch.float32
    grads = [(p.grad, q.grad) for p, q in zip(model.parameters(), ref_model.parameters()) if p.grad is not None]
    assert all(torch.isfinite(g).all() for g, _ in grads)


def test_fairseq_hydra_train_runs_the_bf16_switch(tmp_path):
    pytest.importorskip("fairseq", reason="the fairseq extra is not installed (pip install -e .[train])")
    from emotion2vec.pretrain._fairseq.emotion2vec_fairseq.model import Emotion2VecFairseqConfig  # noqa: F401
    from emotion2vec.pretrain.manifest import build_manifest

    names = {f.name for f in dataclasses.fields(Emotion2VecFairseqConfig)}
    assert {"attention_implementation", "compute_dtype"} <= names
    wavs = _wavs(tmp_path, seconds=(1.5, 2.0, 2.5, 1.8))
    build_manifest([wavs], tmp_path / "manifest", log=lambda m: None)
    cmd = [str(Path(sys.executable).with_name("fairseq-hydra-train")), "--config-dir", str(REPO / "configs"),
           "--config-name", "emotion2vec_tiny_cpu", f"task.data={tmp_path / 'manifest'}",
           f"common.user_dir={emotion2vec.fairseq_user_dir()}", f"checkpoint.save_dir={tmp_path / 'run'}",
           "optimization.max_update=3", "model.compute_dtype=bfloat16", "model.attention_implementation=auto",
           "checkpoint.no_save=true"]
    res = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), capture_output=True, text=True,
                         timeout=600)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-3000:]
    losses = [float(v) for v in re.findall(r"\bloss=([-\d.e+]+)", log)]
    assert losses and all(np.isfinite(losses)), log[-2000:]
