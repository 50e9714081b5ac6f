"""The other papers as published: Wagner et al.'s CNN14 baseline and linguistic-sensitivity test, Gavali & Verma's
cost tables (UniSpeech / UniSpeech-SAT parity lives in test_upstreams.py with the other Hugging Face classes)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from emotion2vec import Emotion2Vec
from emotion2vec.cli import main as cli
from emotion2vec.extract.store import FeatureStore
from emotion2vec.models.checkpoint import CheckpointError, save_checkpoint_dir
from emotion2vec.models.cnn14 import Cnn14Config, Cnn14Model, MaskedBatchNorm2d, hz_to_slaney_mel, slaney_mel_filterbank
from emotion2vec.models.panns import DROPPED, KEY_RULES, map_panns_state
from emotion2vec.models.config import ConfigError
from emotion2vec.models.upstream import Upstream, load_upstream

from conftest import URDU, require

TINY = dict(channels=(4, 8, 8, 8, 8, 16))


def run(*args) -> int:
    return cli([str(a) for a in args])


pytestmark = pytest.mark.usefixtures("one_thread")  # in-process runs on one thread, as the subprocesses


def _tiny_cnn14(seed: int = 0) -> Cnn14Model:
    """A small CNN14 with random weights and running statistics (so that eval-mode BN is not the identity)."""
    model = Cnn14Model(Cnn14Config(**TINY))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def _panns_state(model: Cnn14Model, fft: int = 512, mels: int | None = None) -> dict[str, torch.Tensor]:
    """``model``'s weights in the key names of a PANNs CNN14 file, with its front end and AudioSet head tensors."""
    cfg = model.cfg
    state = {}
    for k, v in model.state_dict().items():
        if k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            k = f"conv_block{int(i) + 1}.{rest}"
        state[k] = v.clone()
    n, k = torch.arange(fft, dtype=torch.float64), torch.arange(fft // 2 + 1, dtype=torch.float64)[:, None]
    hann = torch.hann_window(fft, periodic=True, dtype=torch.float64)
    angle = 2 * math.pi * k * n / fft
    state["spectrogram_extractor.stft.conv_real.weight"] = (torch.cos(angle) * hann)[:, None].float()
    state["spectrogram_extractor.stft.conv_imag.weight"] = (-torch.sin(angle) * hann)[:, None].float()
    sr = 16000 if fft == 512 else 32000
    state["logmel_extractor.melW"] = slaney_mel_filterbank(sr, fft, mels or cfg.mel_bins, 50, sr // 2 if fft == 512
                                                           else 14000).float()
    state["fc1.weight"], state["fc1.bias"] = torch.randn(16, 16), torch.zeros(16)
    state["fc_audioset.weight"], state["fc_audioset.bias"] = torch.randn(527, 16), torch.zeros(527)
    return state


# ------------------------------------------------------------------------------------------------ CNN14
def test_slaney_mel_scale_and_filterbank():
    # the scale's anchors: 3 mels per 200 Hz below 1 kHz, 15 at 1 kHz, 27 more per factor 6.4 above
    assert float(hz_to_slaney_mel(200.0)) == pytest.approx(3.0)
    assert float(hz_to_slaney_mel(1000.0)) == pytest.approx(15.0)
    assert float(hz_to_slaney_mel(6400.0)) == pytest.approx(42.0)
    fb = slaney_mel_filterbank(16000, 512, 64, 50.0, 8000.0)
    assert fb.shape == (257, 64) and float(fb.min()) == 0.0
    freqs = torch.linspace(0, 8000, 257, dtype=torch.float64)
    # the edges recomputed from the scale: 66 equally spaced mels between 50 Hz and 8 kHz
    lo, hi = float(hz_to_slaney_mel(50.0)), float(hz_to_slaney_mel(8000.0))
    mels = torch.linspace(lo, hi, 66, dtype=torch.float64)
    hz = torch.where(mels >= 15, 1000 * torch.exp((mels - 15) * math.log(6.4) / 27), mels * 200 / 3)
    assert float(hz[0]) == pytest.approx(50.0) and float(hz[-1]) == pytest.approx(8000.0)
    for band in range(64):
        lower, upper = float(hz[band]), float(hz[band + 2])
        inside = (freqs > lower) & (freqs < upper)
        assert bool((fb[~inside, band] == 0).all())  # a triangle between its neighbours' centres
        assert float(fb[:, band].max()) <= 2 / (upper - lower) + 1e-12  # peak 2 / width: every band has area 1
        if upper - lower > 16 * 31.25:
            assert float(fb[:, band].sum()) * 31.25 == pytest.approx(1.0, rel=0.02)


def test_log_mel_frames_by_hand():
    model = _tiny_cnn14()
    wav = torch.randn(4321, generator=torch.Generator().manual_seed(1)) * 0.1
    ours = model.logmel(wav)
    assert ours.shape == (1 + 4321 // 160, 64)
    x = np.pad(wav.numpy().astype(np.float64), 256, mode="reflect")  # centred frames
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(512) / 512)
    fb = slaney_mel_filterbank(16000, 512, 64, 50.0, 8000.0).numpy()
    for t in (0, 7, ours.shape[0] - 1):
        power = np.abs(np.fft.rfft(x[t * 160:t * 160 + 512] * hann)) ** 2
        expected = 10 * np.log10(np.maximum(power @ fb, 1e-10))
        assert np.abs(ours[t].numpy() - expected).max() < 1e-3


def test_cnn14_geometry_and_parameter_count():
    model, info = load_upstream("cnn14")
    assert isinstance(model, Upstream) and info.source == "cnn14" and not model.training
    cfg = model.cfg
    assert (cfg.num_layers, cfg.embed_dim, cfg.frame_stride, cfg.normalize) == (1, 2048, 5120, False)
    # PANNs' CNN14 has 80,753,615 parameters; its AudioSet head (fc1 2048x2048, fc_audioset 2048x527) is not here
    head = 2048 * 2048 + 2048 + 2048 * 527 + 527
    assert sum(p.numel() for p in model.parameters()) + head == 80_753_615
    assert [cfg.num_frames(n) for n in (256, 257, 400, 5119, 5120, 16000)] == [0, 1, 1, 1, 2, 4]
    again, _ = load_upstream("cnn14")
    assert torch.equal(again.blocks[3].conv1.weight, model.blocks[3].conv1.weight)  # a fixed initialisation


def test_cnn14_batched_frames_equal_each_input_alone():
    model = _tiny_cnn14()
    wavs = [torch.randn(n, generator=torch.Generator().manual_seed(n)) * 0.1 for n in (16000, 12345, 7001, 400)]
    batch, pad = torch.zeros(4, 16000), torch.ones(4, 16000, dtype=torch.bool)
    for i, w in enumerate(wavs):
        batch[i, :len(w)], pad[i, :len(w)] = w, False
    with torch.no_grad():
        together = model.extract_features(batch, pad)
        for i, w in enumerate(wavs):
            alone = model.extract_features(w[None])
            T = model.cfg.num_frames(len(w))
            assert alone.x.shape == (1, T, 16) and int((~together.padding_mask[i]).sum()) == T
            assert float((together.x[i, :T] - alone.x[0]).abs().max()) < 1e-5
        with pytest.raises(ConfigError, match="at least 257 samples"):
            model.extract_features(torch.zeros(1, 200))
        with pytest.raises(ConfigError, match="one layer"):
            model.extract_features(batch, pad, layers=[3])


def test_masked_batch_norm_trains_on_the_valid_frames_only():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10, 4)
    valid = torch.arange(10)[None, :] < torch.tensor([10, 6])[:, None]
    ours, ref = MaskedBatchNorm2d(3), torch.nn.BatchNorm2d(3)
    ref.load_state_dict(ours.state_dict())
    y = ours.train()(x, valid)
    packed = torch.cat([x[0], x[1, :, :6]], dim=1)[None]  # the 16 valid frames as one input
    expected = ref.train()(packed)[0]
    assert torch.allclose(torch.cat([y[0], y[1, :, :6]], dim=1), expected, atol=1e-5)
    assert torch.allclose(ours.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var, ref.running_var, atol=1e-6)
    assert int(ours.num_batches_tracked) == 1


def test_panns_file_maps_by_rule_and_refuses_what_it_cannot_run(tmp_path):
    model = _tiny_cnn14(seed=3)
    state = _panns_state(model)
    examples = {"bn0.running_mean": "bn0.running_mean", "conv_block3.conv2.weight": "blocks.2.conv2.weight",
                "conv_block6.bn1.running_var": "blocks.5.bn1.running_var"}
    assert [ex for _, _, ex in KEY_RULES] == list(examples)
    for theirs, ours in examples.items():
        assert list(map_panns_state({theirs: torch.zeros(1)}, "x")[0]) == [ours]
    path = tmp_path / "Cnn14_16k.pth"
    torch.save({"model": state, "iteration": 10}, path)
    loaded, info = load_upstream(f"cnn14:{path}")
    assert info.source == "cnn14-panns" and info.meta["dropped"] == sorted(DROPPED)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    wav = torch.randn(1, 9000, generator=torch.Generator().manual_seed(5)) * 0.1
    with torch.no_grad():
        assert torch.allclose(loaded.extract_features(wav).x, model.extract_features(wav).x, atol=1e-6)
    assert "PANNs file Cnn14_16k.pth" in loaded.settings()["cnn14_weights"]
    bad = {**state, "conv_block7.conv1.weight": torch.zeros(1)}
    torch.save({"model": bad}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="unknown tensor.*conv_block7.conv1.weight"):
        load_upstream(f"cnn14:{tmp_path / 'bad.pth'}")
    torch.save({"model": _panns_state(model, fft=1024)}, tmp_path / "32k.pth")
    with pytest.raises(CheckpointError, match="1024-point FFT.*Cnn14_16k"):
        load_upstream(f"cnn14:{tmp_path / '32k.pth'}")
    wrong_range = dict(state)
    wrong_range["logmel_extractor.melW"] = slaney_mel_filterbank(16000, 512, 64, 0.0, 8000.0).float()
    torch.save({"model": wrong_range}, tmp_path / "range.pth")
    with pytest.raises(CheckpointError, match="mel filterbank differs"):
        load_upstream(f"cnn14:{tmp_path / 'range.pth'}")
    with pytest.raises(CheckpointError, match="no such file"):
        load_upstream(f"cnn14:{tmp_path / 'missing.pth'}")


@pytest.fixture(scope="module")
def tiny_cnn14_dir(tmp_path_factory) -> Path:
    """A small CNN14 in our checkpoint format (what a user gets from `convert`-like saving or an export)."""
    model = _tiny_cnn14(seed=1)
    out = tmp_path_factory.mktemp("cnn14") / "tiny_cnn14"
    save_checkpoint_dir(out, model.cfg, model.state_dict())
    return out


def test_cnn14_extracts_through_the_cli_with_windows(tiny_cnn14_dir, tmp_path):
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    clips = {"short": 0.5, "mid": 3.0, "long": 5.0}
    for name, seconds in clips.items():
        sf.write(wavs / f"{name}.wav", np.random.default_rng(len(name)).standard_normal(int(seconds * 16000)) * 0.05,
                 16000, subtype="FLOAT")
    out = tmp_path / "f"
    assert run("extract", "--checkpoint", tiny_cnn14_dir, "--input", wavs, "--out", out, "--chunk-seconds", "2",
               "--num-workers", "0", "--quiet") == 0
    meta = json.loads((out / "features.json").read_text())
    assert meta["backend"] == "cnn14" and meta["frame_rate"] == 3.125 and meta["dim"] == 16
    model, _ = load_upstream(tiny_cnn14_dir)
    store = FeatureStore(out)
    for name, seconds in clips.items():
        x = store[name]
        assert x.shape == (model.cfg.num_frames(int(seconds * 16000)), 16) and np.isfinite(x).all()
    wav, _ = sf.read(wavs / "mid.wav", dtype="float32")
    with torch.no_grad():
        whole = model.extract_features(torch.from_numpy(wav)[None]).x[0].numpy()
    assert np.abs(store["mid"][:2] - whole[:2]).max() < 1e-4  # the first window's kept frames are exact


@pytest.fixture(scope="module")
def cnn14_run(tiny_cnn14_dir, tmp_path_factory) -> tuple[Path, Path]:
    """One epoch of fine-tuning the small CNN14 from its start, everything trained: (data, run)."""
    root = require(URDU, "URDU corpus")
    base = tmp_path_factory.mktemp("cnn14_run")
    audio = base / "audio"
    for label in ("Angry", "Happy", "Neutral", "Sad"):
        (audio / label).mkdir(parents=True)
        for f in sorted((root / label).glob("*.wav"))[:6]:
            (audio / label / f.name).symlink_to(f)
    data = base / "manifest"
    assert run("prepare", "urdu", "--root", audio, "--out", data, "--protocol", "holdout", "--no-audio-audit",
               "--quiet") == 0
    out = base / "run"
    assert run("finetune", "--checkpoint", tiny_cnn14_dir, "--data", data, "--out", out, "--freeze", "none",
               "--epochs", "1", "--max-seconds", "1", "--batch-seconds", "4", "--num-workers", "0", "--bootstrap",
               "0", "--no-audio-audit", "--precision", "fp32", "--quiet", "--no-tensorboard") == 0
    return data, out


def test_cnn14_fine_tunes_from_scratch_exports_and_predicts(tiny_cnn14_dir, cnn14_run):
    data, out = cnn14_run
    result = json.loads((out / "holdout" / "result.json").read_text())
    export = out / "models" / "holdout"
    tuned = Emotion2Vec.from_checkpoint(export)
    rows = {r["key"]: r for r in csv.DictReader(open(data / "data.tsv"), delimiter="\t")}
    key = result["test_keys"][0]
    scores = tuned.predict(rows[key]["path"])["scores"]
    order = json.loads((export / "config.json").read_text())["classifier"]["labels"]
    assert sorted(order) == sorted(scores)
    assert np.abs(np.array([scores[c] for c in order]) - result["predictions"][0]).max() < 1e-4
    start, _ = load_upstream(tiny_cnn14_dir)
    changed, _ = load_upstream(export)
    assert not torch.equal(start.blocks[0].conv1.weight, changed.blocks[0].conv1.weight)  # trained from its start


# ------------------------------------------------------------------------------------------------ cost tables
def _cnn14_flops_by_hand(cfg: Cnn14Config, samples: int) -> int:
    """Multiply-adds x 2 of the mel projection and of every 3 x 3 convolution at its resolution."""
    T, Fq = cfg.spectrogram_frames(samples), cfg.mel_bins
    total = 2 * T * (cfg.window // 2 + 1) * Fq
    widths = (1, *cfg.channels)
    for i in range(6):
        c_in, c_out = widths[i], widths[i + 1]
        total += 2 * 9 * T * Fq * (c_in * c_out + c_out * c_out)
        if i < 5:
            T, Fq = -(-T // 2), Fq // 2
    return total


def test_cost_figures_against_hand_computation(tiny_cnn14_dir):
    from emotion2vec.analysis.cost import measure_model

    cost = measure_model(str(tiny_cnn14_dir), seconds=[4.0, 2.5], batch=2, repeats=1)
    model, _ = load_upstream(tiny_cnn14_dir)
    assert cost.parameters == sum(p.numel() for p in model.parameters())
    assert cost.weight_mb == pytest.approx(sum(t.numel() * 4 for t in model.state_dict().values()
                                               if t.is_floating_point()) / 1e6)
    assert cost.disk_mb == pytest.approx((tiny_cnn14_dir / "model.safetensors").stat().st_size / 1e6)
    for seconds, gflops in zip(cost.seconds, cost.gflops_per_audio_s):
        assert gflops * 1e9 * seconds == pytest.approx(_cnn14_flops_by_hand(model.cfg, int(seconds * 16000)))
    assert all(ms > 0 for ms in cost.forward_ms) and cost.train_step_s > 0


def test_cost_benchmark_measures_every_model_in_one_run(tiny_cnn14_dir, cnn14_run, fixtures_dir, tmp_path):
    import subprocess
    import sys

    transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
    config = transformers.UniSpeechSatConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                             num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    transformers.UniSpeechSatModel(config).save_pretrained(tmp_path / "sat")
    export = cnn14_run[1] / "models" / "holdout"
    models = [str(fixtures_dir / "tiny_emotion2vec.pt"), f"hf:{tmp_path / 'sat'}", str(tiny_cnn14_dir), str(export)]
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "cost.py"), *models, "--seconds", "1", "2",
                           "--batch", "2", "--repeats", "1", "--threads", "1", "--json", str(tmp_path / "c.json"),
                           "--out", str(tmp_path / "c.md")], capture_output=True, text=True, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("# machine:") and (tmp_path / "c.md").read_text() == proc.stdout
    header = lines[2]
    assert "GFLOPs / audio s (1 s)" in header and "forward ms (2 s)" in header and "train step s (2 x 1 s)" in header
    figures = json.loads((tmp_path / "c.json").read_text())["models"]
    assert [f["model"] for f in figures] == models and len(lines) == 4 + len(models)
    sat = next(f for f in figures if f["model"].startswith("hf:"))
    assert sat["source"] == "hf:UniSpeechSatModel"
    assert sat["parameters"] == sum(p.numel() for p in transformers.UniSpeechSatModel(config).parameters())
    tuned = next(f for f in figures if f["model"] == str(export))
    assert tuned["notes"] == ["with its downstream head"] and tuned["parameters"] > figures[2]["parameters"]
    assert all(f["train_step_s"] > 0 and len(f["forward_ms"]) == 2 for f in figures)
    bad = subprocess.run([sys.executable, str(repo / "benchmarks" / "cost.py"), str(tmp_path / "nothing")],
                         capture_output=True, text=True, timeout=120, cwd=repo)
    assert bad.returncode == 2 and "nothing" in bad.stderr


# ------------------------------------------------------------------------------------------------ linguistics
@pytest.fixture(scope="module")
def valence_model(tmp_path_factory, ) -> Path:
    """A tiny regression model (arousal, valence): the tiny emotion2vec checkpoint with a random head, exported as
    `finetune` exports (nothing here is trained; the test checks the bookkeeping, not the model)."""
    from emotion2vec.downstream.heads import HeadConfig
    from emotion2vec.finetune.export import classifier_spec, export_model
    from emotion2vec.finetune.heads import UtteranceHead

    from conftest import FIXTURES

    tiny = require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint fixtures")
    upstream, _ = load_upstream(tiny)
    torch.manual_seed(0)
    head = UtteranceHead(HeadConfig(upstream.cfg.embed_dim, 2, hidden=16))
    spec = classifier_spec(head, ["arousal", "valence"], -1, "regression", "ccc", "identity")
    out = tmp_path_factory.mktemp("valence") / "model"
    export_model(out, upstream, spec, {"source": "test"})
    return out


def test_word_ranking_and_classes_by_hand():
    from emotion2vec.analysis.linguistics import make_sentences, rank_words, tokenize, word_classes

    assert tokenize("Don't STOP, it's 3 o'clock!") == ["dont", "stop", "its", "oclock"]
    rows = [{"key": "a", "text": "a great day, great!", "valence": "0.9"},
            {"key": "b", "text": "the day was awful", "valence": "0.1"},
            {"key": "c", "text": "an awful wall", "valence": "0.3"},
            {"key": "d", "text": "the wall", "valence": "0.5"},
            {"key": "e", "text": "", "valence": "0.7"},  # no transcript: not counted
            {"key": "f", "text": "nothing here", "valence": "0.5"}]  # counted in the mean rating only
    ranking, center = rank_words(rows, min_count=2)
    # great: 0.9 twice; day: (0.9 + 0.1) / 2; wall: (0.3 + 0.5) / 2; awful: (0.1 + 0.3) / 2; the/a/an/was: stopwords
    assert [(s.word, s.count, round(s.mean, 6)) for s in ranking] == [
        ("great", 2, 0.9), ("day", 2, 0.5), ("wall", 2, 0.4), ("awful", 2, 0.2)]
    assert center == pytest.approx((0.9 + 0.1 + 0.3 + 0.5 + 0.5) / 5)
    classes = word_classes(ranking, center, top=1)
    assert classes == {"positive": ["great"], "neutral": ["day"], "negative": ["awful"]}  # |0.5 - 0.46| < |0.4 - 0.46|
    assert [s.word_class for s in ranking] == ["positive", "neutral", "", "negative"]
    with_stopwords, _ = rank_words(rows, min_count=2, stopwords=set())
    assert "the" in {s.word for s in with_stopwords}
    sentences = make_sentences(classes, ["This is {word}.", "So {word}!"])
    assert [(s.word_class, s.text) for s in sentences][:2] == [("positive", "This is great."),
                                                               ("positive", "So great!")]
    assert len(sentences) == 6


def test_espeak_renders_offline_and_deterministically():
    pytest.importorskip("espeakng_loader", reason="the tts extra is not installed")
    from emotion2vec.analysis.tts import EspeakTts, render16k

    tts = EspeakTts("en")
    wav, sr = tts.render("This is wonderful.")
    assert sr == 22050 and wav.dtype == np.float32 and 0.5 < len(wav) / sr < 3.0 and np.abs(wav).max() > 0.05
    again, _ = tts.render("This is wonderful.")
    assert np.array_equal(wav, again)
    longer, _ = tts.render("This is wonderful, and the afternoon was long.")
    assert len(longer) > len(wav)
    at16 = render16k(tts, "This is wonderful.")
    assert abs(len(at16) - len(wav) * 16000 / 22050) <= 2
    monotone, _ = EspeakTts("en", pitch_range=0).render("This is wonderful.")
    assert not np.array_equal(monotone, wav)  # the setting reaches the engine (and is restored below)
    assert np.array_equal(tts.render("This is wonderful.")[0], wav)


def test_linguistics_command_scores_every_sentence_with_the_model(valence_model, tmp_path, capsys):
    pytest.importorskip("espeakng_loader", reason="the tts extra is not installed")
    out = tmp_path / "ling"
    assert run("linguistics", valence_model, "--out", out, "--positive", "wonderful,great", "--negative",
               "stupid,awful", "--neutral", "afternoon,wall", "--template", "This is {word}.", "--template",
               "I think it is {word}.", "--quiet") == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "sentences.tsv"), delimiter="\t"))
    assert len(rows) == 12 and rows[0]["sentence"] == "This is wonderful."
    assert rows[1]["sentence"] == "I think it is wonderful."
    model = Emotion2Vec.from_checkpoint(valence_model)
    for r in rows:
        wav, sr = sf.read(out / r["audio"], dtype="float32")
        assert sr == 16000
        assert float(r["valence"]) == pytest.approx(model.predict(wav, sample_rate=16000)["values"]["valence"],
                                                    abs=1e-5)
    result = json.loads((out / "linguistics.json").read_text())
    for c in ("positive", "neutral", "negative"):
        v = [float(r["valence"]) for r in rows if r["class"] == c]
        assert result["summary"][c]["n"] == 4 and result["summary"][c]["mean"] == pytest.approx(np.mean(v), abs=1e-6)
    assert result["summary"]["spread"] == pytest.approx(result["summary"]["positive"]["mean"]
                                                        - result["summary"]["negative"]["mean"])
    assert result["target"] == "valence" and "| positive | 4 |" in printed and "Spread" in printed
    assert (out / "linguistics.png").read_bytes()[:4] == b"\x89PNG"
    # the same folder with other settings is refused; the same settings run again
    assert run("linguistics", valence_model, "--out", out, "--quiet") == 2
    assert "other settings" in capsys.readouterr().err
    assert run("linguistics", valence_model, "--out", out, "--positive", "wonderful,great", "--negative",
               "stupid,awful", "--neutral", "afternoon,wall", "--template", "This is {word}.", "--template",
               "I think it is {word}.", "--quiet") == 0


def test_linguistics_ranks_a_corpus_and_renders_its_transcripts_with_a_tts_command(valence_model, tmp_path, capsys):
    import sys

    rng = np.random.default_rng(0)
    audio = tmp_path / "audio"
    audio.mkdir()
    texts = {"train": ["what a lovely lovely day", "a lovely evening", "the awful noise", "awful weather today",
                       "the chair is here", "a chair and a day", "noise and weather", "evening weather"],
             "test": ["lovely weather", "awful day", "the chair", "a noise"]}
    lines = ["key\tpath\tlabel\tspeaker\tgender\tduration\tsplit\ttext\tvalence"]
    for split, items in texts.items():
        for i, text in enumerate(items):
            key = f"{split}{i}"
            sf.write(audio / f"{key}.wav", rng.standard_normal(16000).astype(np.float32) * 0.05, 16000)
            valence = 0.8 if ("lovely" in text) else 0.2 if "awful" in text else 0.5
            lines.append(f"{key}\t{audio / key}.wav\tx\ts{i % 3}\t\t1.0\t{split}\t{text}\t{valence}")
    data = tmp_path / "manifest"
    data.mkdir()
    (data / "data.tsv").write_text("\n".join(lines) + "\n")
    # a TTS program: a tone whose pitch follows the sentence's length, written at 16 kHz
    script = tmp_path / "tone_tts.py"
    script.write_text("import sys, numpy as np, soundfile as sf\n"
                      "n = len(sys.argv[2])\n"
                      "sf.write(sys.argv[1], (0.1 * np.sin(np.arange(8000 + 100 * n) * n / 50)).astype('float32'), "
                      "16000, subtype='FLOAT')\n")
    out = tmp_path / "ling"
    command = f"{sys.executable} {script} {{out}} {{text}}"
    assert run("linguistics", valence_model, "--data", data, "--min-count", "2", "--top", "1", "--transcripts", "4",
               "--tts-command", command, "--out", out, "--quiet") == 0
    words = list(csv.DictReader(open(out / "words.tsv"), delimiter="\t"))
    top = {w["class"]: w["word"] for w in words if w["class"]}
    assert top == {"positive": "lovely", "negative": "awful", "neutral": next(
        w["word"] for w in words if w["word"] in ("chair", "day", "evening", "noise", "weather") and w["class"])}
    lovely = next(w for w in words if w["word"] == "lovely")
    assert int(lovely["count"]) == 3 and float(lovely["mean_valence"]) == pytest.approx(0.8)
    sentence = next(csv.DictReader(open(out / "sentences.tsv"), delimiter="\t"))
    wav, _ = sf.read(out / sentence["audio"], dtype="float32")
    n = len(sentence["sentence"])
    assert np.allclose(wav, (0.1 * np.sin(np.arange(8000 + 100 * n) * n / 50)).astype(np.float32), atol=1e-6)
    rows = list(csv.DictReader(open(out / "transcripts.tsv"), delimiter="\t"))
    assert [r["key"] for r in rows] == ["test0", "test1", "test2", "test3"]
    model = Emotion2Vec.from_checkpoint(valence_model)
    original = np.array([model.predict(str(audio / f"{r['key']}.wav"))["values"]["valence"] for r in rows])
    assert np.allclose([float(r["original"]) for r in rows], original, atol=1e-5)
    rated, syn = np.array([float(r["valence"]) for r in rows]), np.array([float(r["synthetic"]) for r in rows])
    expected = 2 * np.cov(syn, rated, bias=True)[0, 1] / (syn.var() + rated.var() + (syn.mean() - rated.mean()) ** 2)
    result = json.loads((out / "linguistics.json").read_text())
    assert result["transcripts"]["ccc_synthetic"] == pytest.approx(expected, abs=1e-6)
    assert result["ranking"]["split"] == "train" and result["ranking"]["words"] == len(words)


def test_linguistics_bad_inputs_are_named(valence_model, fixtures_dir, tmp_path, capsys):
    from emotion2vec.analysis import AnalysisError
    from emotion2vec.analysis.tts import CommandTts

    with pytest.raises(AnalysisError, match=r"must write its audio to \{out\}"):
        CommandTts("espeak-ng {text}")
    with pytest.raises(AnalysisError, match="program 'no-such-tts' not found"):
        CommandTts("no-such-tts -w {out} {text}").render("hello")
    plus = fixtures_dir / "funasr_emotion2vec_plus"
    assert run("linguistics", plus, "--out", tmp_path / "a", "--tts-command", "x -w {out} {text}", "--quiet") == 2
    assert "a classification head" in capsys.readouterr().err
    assert run("linguistics", valence_model, "--out", tmp_path / "b", "--target", "dominance", "--tts-command",
               "x -w {out} {text}", "--quiet") == 2
    assert "predicts arousal, valence" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------------------ docs/papers.md
#: blocks that need a licensed corpus, a downloaded model or a GPU (a text found in exactly that block): every
#: emotion2vec / benchmark line in them is parsed by its command's own parser instead of run
def test_cnn14_under_bf16_autocast_keeps_its_front_end_in_float32():
    model = _tiny_cnn14()
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(2)) * 0.1
    pad = torch.zeros(2, 8000, dtype=torch.bool)
    pad[1, 6000:] = True
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.logmel(wavs[0]).dtype == torch.float32
        low = model.extract_features(wavs, pad).x.float()
    with torch.no_grad():
        full = model.extract_features(wavs, pad).x
    assert torch.isfinite(low).all() and float((low - full).abs().max()) < 0.1 * float(full.abs().max())


# ------------------------------------------------------------------------------------------------ Park et al.
def _arcface_by_hand(e: np.ndarray, centres: np.ndarray, y: int, s: float = 30.0, m: float = 0.3) -> float:
    """Eq. (4) of Park et al. for one input: angles from the normalised vectors, the margin on the true class."""
    cos = [float(np.dot(e, w) / np.linalg.norm(e) / np.linalg.norm(w)) for w in centres]
    theta = [math.acos(max(-1.0, min(1.0, c))) for c in cos]
    target = math.exp(s * math.cos(theta[y] + m))
    others = sum(math.exp(s * math.cos(t)) for j, t in enumerate(theta) if j != y)
    return -math.log(target / (target + others))


def test_park_fusion_eq5_by_hand():
    from emotion2vec.finetune.park import fuse_eq5

    w = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    h = torch.tensor([[[1.0, 1.0, 2.0], [4.0, 5.0, 6.0]]])
    # E = w_1 * h_1 + w_2 * h_2 = [1, 2, 1] + [0, -5, 18]
    assert fuse_eq5(w, h).tolist() == [[1.0, -3.0, 19.0]]


def test_park_emotion_and_speaker_heads_against_hand_computation():
    from emotion2vec.downstream.losses import ArcFaceLoss
    from emotion2vec.finetune.park import ParkHead, ParkHeadConfig, masked_max

    torch.manual_seed(0)
    frames, lengths = torch.randn(3, 7, 12), torch.tensor([7, 5, 2])
    emotion = ParkHead(ParkHeadConfig(12, 4, dim=8, blocks=2, heads=4, ffn=16)).eval()
    with torch.no_grad():
        emotion.fusion.copy_(torch.randn(2, 8))
        h = emotion.pooled_vectors(frames, lengths)  # (B, k, d)
        # block by block, by hand: ReLU, FC, block 1, max over valid frames; block 2 on block 1's output
        x = emotion.fc(F.relu(frames))
        first = emotion.blocks[0](x, lengths)
        second = emotion.blocks[1](first, lengths)
        for b, n in enumerate(lengths.tolist()):
            assert torch.allclose(h[b, 0], first[b, :n].max(0).values, atol=1e-6)
            assert torch.allclose(h[b, 1], second[b, :n].max(0).values, atol=1e-6)
            alone = emotion.pooled_vectors(frames[b:b + 1, :n], lengths[b:b + 1])
            assert torch.allclose(alone[0], h[b], atol=1e-5)  # padding never reaches a valid frame
        e = emotion.embed(frames, lengths)
        assert torch.allclose(e, emotion.fusion[0] * h[:, 0] + emotion.fusion[1] * h[:, 1], atol=1e-6)
        outputs = emotion(frames, lengths)
    centres = emotion.output.weight.detach().numpy()
    y = torch.tensor([2, 0, 3])
    by_hand = np.mean([_arcface_by_hand(e[b].numpy(), centres, int(y[b])) for b in range(3)])
    for b in range(3):
        cos = centres @ e[b].numpy() / np.linalg.norm(centres, axis=1) / np.linalg.norm(e[b].numpy())
        assert np.allclose(outputs[b].numpy(), 30 * cos, atol=1e-4)  # s cos(theta_j) on the l2-normalised E
    assert float(ArcFaceLoss(30.0, 0.3)(outputs, y)) == pytest.approx(by_hand, rel=1e-4)

    speaker = ParkHead(ParkHeadConfig(12, 5, network="speaker", dim=8, blocks=1, ffn=16)).eval()
    with torch.no_grad():
        h_id = speaker.embed(frames, lengths)
        x = speaker.blocks[0](speaker.fc(frames), lengths)  # no ReLU before the speaker network's FC
        assert torch.allclose(h_id, masked_max(x, lengths), atol=1e-6)
        logits = speaker(frames, lengths)
    spk = torch.tensor([4, 1, 1])
    by_hand = np.mean([_arcface_by_hand(h_id[b].numpy(), speaker.output.weight.detach().numpy(), int(spk[b]))
                       for b in range(3)])
    assert float(ArcFaceLoss(30.0, 0.3)(logits, spk)) == pytest.approx(by_hand, rel=1e-4)
    ce = ParkHead(ParkHeadConfig(12, 5, network="speaker", dim=8, blocks=1, ffn=16, output="linear")).eval()
    assert isinstance(ce.output, torch.nn.Linear)  # the cross-entropy variant: a linear layer, softmax in the loss


def test_park_speaker_aware_fusion_extends_eq5_by_one_vector():
    from emotion2vec.finetune import FinetuneError
    from emotion2vec.finetune.park import ParkHead, ParkHeadConfig

    torch.manual_seed(1)
    frames, lengths = torch.randn(2, 6, 12), torch.tensor([6, 4])
    head = ParkHead(ParkHeadConfig(12, 4, dim=8, blocks=3, ffn=16)).eval()
    with torch.no_grad():
        head.fusion.copy_(torch.rand(3, 8) + 0.5)
        trained = head.fusion.detach().clone()
        before = head.embed(frames, lengths)
        head.extend_fusion()
        assert head.fusion.shape == (4, 8) and torch.equal(head.fusion[:3], trained)
        assert torch.equal(head.fusion[3], torch.ones(8))
        h_id = torch.randn(2, 8)
        after = head.embed(frames, lengths, h_id[:, None])
        assert torch.allclose(after, before + h_id, atol=1e-5)  # k + 1 vectors, the new row at 1
    with pytest.raises(FinetuneError, match="fuses 1 extra"):
        head.embed(frames, lengths)


# ------------------------------------------------------------------------------------------------ EMO-SUPERB
def _emo_superb_tree(root: Path, corpus: str = "IMPROV", wavs: Path | None = None) -> Path:
    """A small tree in the EMO-SUPERB layout: Audios/, Primary/ and Secondary/ with config.json and two partitions."""
    audios = root / corpus / "Audios"
    audios.mkdir(parents=True)
    names = [f"MSP-IMPROV-S01{e}-{g}0{s}-R-{g}{g}01.wav" for e in "AHNS" for g in "FM" for s in (1, 2)]
    rng = np.random.default_rng(0)
    for n in names:
        sf.write(audios / n, (rng.standard_normal(8000) * 0.05).astype(np.float32), 16000)
    for cond, classes in (("Primary", ["angry", "sad", "neutral", "happy"]),
                          ("Secondary", ["angry", "sad", "neutral", "happy", "frustrated"])):
        folder = root / corpus / cond
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({
            "data_split_type": {"train": "Train", "dev": "Development", "test": "Test"},
            "categorical": {"emo_type": classes}, "dimensional": {"max_score": 5, "min_score": 1}}))
        for part in (1, 2):
            lines = ["FileName," + ",".join(classes) + ",EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
            for i, n in enumerate(names):
                main = {"A": 0, "S": 1, "N": 2, "H": 3}[n[14]]
                shares = [0.9 if j == main else 0.1 / (len(classes) - 1) for j in range(len(classes))]
                gender, speaker = n[16], n[18]
                test = (speaker == "1") == (part == 1)
                split = "Test" if test else ("Development" if gender == "F" else "Train")
                lines.append(f"{n}," + ",".join(f"{v:.6f}" for v in shares) + f",3.0,{1 + main},2.0,0{speaker},"
                             f"{'Female' if gender == 'F' else 'Male'},{split}")
            (folder / f"labels_consensus_{part}.csv").write_text("\n".join(lines) + "\n")
    return root / corpus


def test_emo_superb_label_folders_and_table_layout(tmp_path):
    from emotion2vec.downstream.emo_superb import EmoSuperbError, benchmark_table, read_condition

    tree = _emo_superb_tree(tmp_path)
    cond = read_condition(tree / "Primary")
    assert cond.classes == ["angry", "sad", "neutral", "happy"] and cond.folds == ["fold1", "fold2"]
    row = cond.rows["MSP-IMPROV-S01H-M02-R-MM01.wav"]
    assert row.speaker == "M02" and row.gender == "M" and row.shares["happy"] == pytest.approx(0.9)
    assert row.dimensions == {"arousal": 0.5, "valence": 0.75, "dominance": 0.25}  # (x - 1) / (5 - 1)
    assert row.folds == {"fold1": "train", "fold2": "test"}
    assert read_condition(tree / "Secondary").classes[-1] == "frustrated"
    bad = tree / "Primary" / "labels_consensus_1.csv"
    bad.write_text(bad.read_text().replace(",Test\n", ",Holdout\n", 1))
    with pytest.raises(EmoSuperbError, match=r"labels_consensus_1.csv:\d+: .*Split_Set 'Holdout'"):
        read_condition(tree / "Primary")

    def result(source, corpus, value):
        return {"source": source, "corpus": corpus, "summary": {"ml_macro_f1": {"mean": value, "std": 0.0}}}

    conditions = ["msp-improv (P)", "crema-d", "msp-podcast (P)", "biic-podcast (P)", "iemocap", "biic-nnime",
                  "msp-improv (S)", "msp-podcast (S)", "biic-podcast (S)"]
    runs = [result("WavLM", c, 0.1 * (i + 1)) for i, c in enumerate(conditions)] + [result("FBANK", "iemocap", 0.242)]
    lines = benchmark_table(runs).splitlines()
    assert lines[0] == ("| Upstream | Average | IMPROV (P) | CREMA-D | POD (P) | B-POD (P) | IEMOCAP | NNIME | "
                        "IMPROV (S) | POD (S) | B-POD (S) |")
    assert lines[2] == ("| WavLM | 0.50000 | 0.100 | 0.200 | 0.300 | 0.400 | 0.500 | 0.600 | 0.700 | 0.800 | "
                        "0.900 |")
    assert lines[3] == "| FBANK |  | – | – | – | – | 0.242 | – | – | – | – |"  # no average over fewer
    with pytest.raises(EmoSuperbError, match="'urdu' is not an EMO-SUPERB condition"):
        benchmark_table([result("WavLM", "urdu", 0.5)])


def test_park_speaker_aware_model_exports_and_predicts(tmp_path):
    """Step 2 of Park et al. as stored: the speaker network (upstream + Park speaker head) frozen inside the emotion
    head; the export loads in predict and the speaker model loads as a speaker encoder."""
    from conftest import FIXTURES
    from emotion2vec.finetune.export import classifier_spec, export_model
    from emotion2vec.finetune.heads import SpeakerEncoder, upstream_frames
    from emotion2vec.finetune.model import load_speaker_encoder
    from emotion2vec.finetune.park import ParkHead, ParkHeadConfig

    tiny = require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint fixtures")
    upstream, _ = load_upstream(tiny)
    D = upstream.cfg.embed_dim
    torch.manual_seed(0)
    spk_head = ParkHead(ParkHeadConfig(D, 3, network="speaker", dim=16, blocks=1, ffn=16))
    export_model(tmp_path / "spk", upstream, classifier_spec(spk_head, ["s1", "s2", "s3"], -1, "speaker", "ce",
                                                             "softmax"), {})
    encoder = load_speaker_encoder(str(tmp_path / "spk"))
    assert isinstance(encoder, SpeakerEncoder) and not encoder.normalize and encoder.dim == 16
    emotion = ParkHead(ParkHeadConfig(D, 4, dim=16, blocks=2, ffn=16)).extend_fusion()
    aware = ParkHead(emotion.config, encoder)
    aware.load_state_dict({**emotion.state_dict(), **{f"speaker.{k}": v for k, v in encoder.state_dict().items()}})
    aware.eval()
    export_model(tmp_path / "emo", upstream, classifier_spec(aware, ["angry", "happy", "neutral", "sad"], -1,
                                                             "categorical", "ce", "softmax"), {})
    meta = json.loads((tmp_path / "emo" / "config.json").read_text())["classifier"]
    assert meta["kind"] == "park" and meta["config"]["fusion"] == "park"
    assert meta["config"]["park"]["extra_vectors"] == 1
    wav = torch.randn(24000, generator=torch.Generator().manual_seed(4)) * 0.1
    scores = Emotion2Vec.from_checkpoint(tmp_path / "emo").predict(wav.numpy(), sample_rate=16000)["scores"]
    with torch.no_grad():  # by hand: H_id from the speaker network, Eq. (5) over 2 + 1 vectors, s cos, softmax
        frames, valid = upstream_frames(upstream, wav[None], torch.tensor([len(wav)]), -1)  # normalised inside
        h_id = spk_head.eval().embed(frames, valid)
        expected = torch.softmax(aware(frames, valid, h_id), -1)[0]
    assert np.allclose([scores[c] for c in ("angry", "happy", "neutral", "sad")], expected.numpy(), atol=1e-4)


def test_park_tables_layout(tmp_path, capsys):
    from emotion2vec.analysis import AnalysisError
    from emotion2vec.analysis.park_tables import park_tables

    def run_(task, head, blocks, fusion, wa, ua):
        return {"source": f"{task}-{head}-{blocks}-{fusion}", "corpus": "iemocap", "task": "categorical",
                "config": {"task": task, "head": head, "park_blocks": blocks, "fusion": fusion},
                "summary": {"wa": {"mean": wa, "std": 0.0}, "ua": {"mean": ua, "std": 0.0}}}

    runs = [run_("speaker", "linear", 1, "concat", 0.8798, 0.8719), run_("speaker", "arcface", 1, "concat", 0.9389,
                                                                          0.9422)]
    runs += [run_("categorical", "arcface", b, "concat", 0.70 + b / 100, 0.71 + b / 100) for b in (1, 2, 3, 4)]
    runs += [run_("categorical", "arcface", 4, "park", 0.7214, 0.7297)]
    joint = run_("categorical", "arcface", 4, "park", 0.70, 0.71)
    joint["config"].update(speaker_train="all", emotion_weight=1.0, id_weight=0.5)
    text = park_tables(runs + [joint])
    assert "| All fine-tuned | 4 | ArcFace | 1 | 0.5 | 70.00 | 71.00 |" in text
    text = park_tables(runs)
    assert "| ArcFace | 93.89 | 94.22 |" in text and "| Cross-entropy | 87.98 | 87.19 |" in text
    assert "| Emotion classification network | ArcFace | WA | 71.00 | 72.00 | 73.00 | 74.00 |" in text
    assert "| Speaker-specific emotion representation network | ArcFace | UA | – | – | – | 72.97 |" in text
    assert "Cross-entropy | WA" not in text  # no cross-entropy emotion runs given: no such rows
    with pytest.raises(AnalysisError, match="not a Park network"):
        park_tables([run_("categorical", "linear", 0, "concat", 0.5, 0.5)])
    for i, r in enumerate(runs):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "results.json").write_text(json.dumps({**r, "protocol": "loso-session", "folds": []}))
    capsys.readouterr()
    assert run("report", *[tmp_path / f"r{i}" for i in range(len(runs))], "--layout", "park") == 0
    assert capsys.readouterr().out == text


def test_speaker_network_on_a_hugging_face_upstream_is_stored_inside_the_export(tmp_path):
    """Park et al.'s networks run on wav2vec 2.0 (a Hugging Face model here): the speaker network inside a
    speaker-aware export is rebuilt from its transformers config and tensors."""
    transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
    from emotion2vec.finetune.export import classifier_spec, export_model
    from emotion2vec.finetune.heads import upstream_frames
    from emotion2vec.finetune.model import load_speaker_encoder
    from emotion2vec.finetune.park import ParkHead, ParkHeadConfig

    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                         num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    upstream, _ = load_upstream(f"hf:{tmp_path / 'w2v'}")
    spk_head = ParkHead(ParkHeadConfig(32, 3, network="speaker", dim=8, blocks=1, ffn=8)).eval()
    export_model(tmp_path / "spk", upstream, classifier_spec(spk_head, ["a", "b", "c"], -1, "speaker", "ce",
                                                             "softmax"), {})
    encoder = load_speaker_encoder(str(tmp_path / "spk"))
    emotion = ParkHead(ParkHeadConfig(32, 2, dim=8, blocks=1, ffn=8)).extend_fusion()
    aware = ParkHead(emotion.config, encoder)
    aware.load_state_dict({**emotion.state_dict(), **{f"speaker.{k}": v for k, v in encoder.state_dict().items()}})
    export_model(tmp_path / "emo", upstream, classifier_spec(aware.eval(), ["neg", "pos"], -1, "categorical", "ce",
                                                             "softmax"), {})
    wav = torch.randn(16000, generator=torch.Generator().manual_seed(1)) * 0.1
    scores = Emotion2Vec.from_checkpoint(tmp_path / "emo").predict(wav.numpy(), sample_rate=16000)["scores"]
    with torch.no_grad():
        frames, valid = upstream_frames(upstream, wav[None], torch.tensor([16000]), -1)
        expected = torch.softmax(aware(frames, valid, spk_head.embed(frames, valid)), -1)[0]
    assert np.allclose([scores["neg"], scores["pos"]], expected.numpy(), atol=1e-5)


# ------------------------------------------------------------------------------------------------ preparers
def _tone(path: Path, seconds: float = 0.5, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.05).astype(np.float32),
             16000)


def test_prepare_voxceleb1_in_the_release_layout(tmp_path, capsys):
    root = tmp_path / "VoxCeleb1"
    lines = []
    for s, speaker in enumerate(("id10001", "id10002", "id10003")):
        for v, video in enumerate(("1zcIwhmdeo4", "7w0IBEWc9Qw")):
            for n in (1, 2):
                rel = f"{speaker}/{video}/{n:05d}.wav"
                _tone(root / "wav" / rel, seed=s * 10 + v * 2 + n)
                lines.append(f"{1 if v == 0 else 2 if n == 1 else 3} {rel}")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    (root / "vox1_meta.csv").write_text("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
                                        "id10001\tA.J._Buckley\tm\tIreland\tdev\nid10002\tA.R._Rahman\tm\tIndia\tdev\n"
                                        "id10003\tAamir_Khan\tf\tIndia\tdev\n")
    out = tmp_path / "manifest"
    assert run("prepare", "voxceleb1", "--root", root, "--out", out, "--no-audio-audit", "--quiet") == 0
    rows = list(csv.DictReader(open(out / "data.tsv"), delimiter="\t"))
    assert len(rows) == 12 and rows[0]["key"] == "id10001/1zcIwhmdeo4/00001"
    assert {r["speaker"] for r in rows} == {"id10001", "id10002", "id10003"} and rows[0]["label"] == "id10001"
    assert [r["split"] for r in rows[:4]] == ["train", "train", "valid", "test"]
    assert {r["gender"] for r in rows if r["speaker"] == "id10003"} == {"F"}
    folds = json.loads((out / "folds.json").read_text())
    assert folds["protocol"] == "original" and len(folds["folds"][0]["test"]) == 3
    (root / "iden_split.txt").write_text("\n".join(lines + ["4 id10001/x/00009.wav"]) + "\n")
    assert run("prepare", "voxceleb1", "--root", root, "--out", tmp_path / "bad", "--no-audio-audit",
               "--quiet") == 2
    assert "iden_split.txt:13" in capsys.readouterr().err


def test_prepare_emo_superb_corpora_with_their_partitions_and_conditions(tmp_path, capsys):
    from emotion2vec.downstream.emo_superb import benchmark_table

    tree = _emo_superb_tree(tmp_path)
    for cond, n_classes in (("P", 4), ("S", 5)):
        out = tmp_path / f"improv_{cond}"
        assert run("prepare", "msp-improv", "--root", tree, "--condition", cond, "--out", out, "--no-audio-audit",
                   "--quiet") == 0
        rows = {r["key"]: r for r in csv.DictReader(open(out / "data.tsv"), delimiter="\t")}
        row = rows["MSP-IMPROV-S01H-M02-R-MM01"]
        assert row["label"] == "happy" and row["speaker"] == "M02" and row["fold1"] == "train" and row["fold2"] == "test"
        assert len(row["votes"].split(",")) == n_classes and "happy:0.9" in row["votes"]
        assert float(row["valence"]) == pytest.approx(0.75)
        folds = json.loads((out / "folds.json").read_text())
        assert folds["corpus"] == f"msp-improv ({cond})" and folds["protocol"] == "emo-superb"
        assert [f["name"] for f in folds["folds"]] == ["fold1", "fold2"]
        assert all(not (set(f["test"]) & set(f["train"])) for f in folds["folds"])
    assert run("prepare", "msp-improv", "--root", tree, "--out", tmp_path / "default", "--no-audio-audit",
               "--quiet") == 0
    assert json.loads((tmp_path / "default" / "folds.json").read_text())["corpus"] == "msp-improv (P)"
    assert run("prepare", "biic-nnime", "--root", tree, "--condition", "P", "--out", tmp_path / "x",
               "--quiet") == 2
    assert "--condition do not apply" in capsys.readouterr().err
    # the soft task reads the shares; the table places the run in its condition
    data = tmp_path / "improv_P"
    assert run("extract", "--checkpoint", "fbank", "--input", data / "data.tsv", "--out", tmp_path / "f",
               "--granularity", "utterance", "--num-workers", "0", "--quiet") == 0
    assert run("probe", "--features", tmp_path / "f", "--data", data, "--out", tmp_path / "r", "--task", "soft",
               "--loss", "cb-ce", "--select-metric", "ml_macro_f1", "--epochs", "2", "--name", "FBANK",
               "--quiet") == 0
    result = json.loads((tmp_path / "r" / "results.json").read_text())
    assert result["corpus"] == "msp-improv (P)" and "ml_macro_f1" in result["summary"]
    assert "| FBANK |  | " in benchmark_table([result])


def _msp_podcast_tree(root: Path) -> Path:
    rows = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    detail = ["FileName,EmoDetail"]
    sets = ["Train", "Train", "Development", "Test1", "Test2", "Test3"]
    for i, (cls, split) in enumerate(zip("HASNHA", sets)):
        name = f"MSP-PODCAST_0001_{i:04d}.wav"
        _tone(root / "Audios" / name, seed=i)
        rows.append(f"{name},{cls},4.0,{2 + i % 5},3.0,{10 + i % 3},{'Female' if i % 2 else 'Male'},{split}")
        detail += [f"{name},\"WORKER1; Happy; Excited,Amused; A:4; V:5; D:3\"",
                   f"{name},\"WORKER2; Neutral; Concerned; A:3; V:4; D:3\""]
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(rows) + "\n")
    (root / "Labels" / "labels_detailed.csv").write_text("\n".join(detail) + "\n")
    return root


def test_prepare_msp_podcast_conditions_and_two_test_sets(tmp_path):
    root = _msp_podcast_tree(tmp_path / "MSP-Podcast")
    out = tmp_path / "pod_s"
    assert run("prepare", "msp-podcast", "--root", root, "--condition", "S", "--test-set", "Test1,Test2", "--out",
               out, "--no-audio-audit", "--quiet") == 0
    rows = list(csv.DictReader(open(out / "data.tsv"), delimiter="\t"))
    assert [r["split"] for r in rows] == ["train", "train", "valid", "test", "test"]  # Test3 left out
    assert rows[0]["votes"] == "amused:1,concerned:1,excited:1" and rows[0]["label"] == "happy"
    assert json.loads((out / "folds.json").read_text())["corpus"] == "msp-podcast (S)"
    assert run("prepare", "msp-podcast", "--root", root, "--condition", "P", "--out", tmp_path / "pod_p",
               "--no-audio-audit", "--quiet") == 0
    primary = list(csv.DictReader(open(tmp_path / "pod_p" / "data.tsv"), delimiter="\t"))
    assert primary[0]["votes"] == "happy:1,neutral:1" and len(primary) == 4  # Test1 only by default


def test_prepare_mosi_as_wagner_uses_it(tmp_path, capsys):
    root = tmp_path / "MOSI"
    lines = ["video_id,clip_id,text,label,mode"]
    for i, (video, score, mode) in enumerate([("v1", 2.4, "train"), ("v1", 0.0, "train"), ("v2", -1.2, "test"),
                                              ("v2", 0.0, "test")]):
        _tone(root / "wav" / video / f"{i}.wav", seed=i)
        lines.append(f"{video},{i},some words,{score},{mode}")
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    speakers = tmp_path / "speakers.tsv"
    speakers.write_text("video_id\tgender\nv1\tfemale\nv2\tm\n")
    out = tmp_path / "mosi"
    assert run("prepare", "mosi", "--root", root, "--keep-neutral", "--speakers", speakers, "--out", out,
               "--no-audio-audit", "--quiet") == 0
    rows = list(csv.DictReader(open(out / "data.tsv"), delimiter="\t"))
    assert [r["label"] for r in rows] == ["positive", "neutral", "negative", "neutral"]
    assert [r["gender"] for r in rows] == ["F", "F", "M", "M"] and rows[1]["sentiment"] == "0.5000"
    assert [r["valence"] for r in rows] == [r["sentiment"] for r in rows] and rows[0]["valence"] == "0.9000"
    assert run("prepare", "mosi", "--root", root, "--out", tmp_path / "binary", "--no-audio-audit", "--quiet") == 0
    assert len(list(csv.DictReader(open(tmp_path / "binary" / "data.tsv"), delimiter="\t"))) == 2
    speakers.write_text("video_id\tgender\nv1\tfemale\nv9\tm\n")
    assert run("prepare", "mosi", "--root", root, "--speakers", speakers, "--out", tmp_path / "bad",
               "--no-audio-audit", "--quiet") == 2
    assert "names 1 video(s) not in the corpus: v9" in capsys.readouterr().err


PARK_FAST = ["--max-seconds", "1", "--batch-seconds", "4", "--num-workers", "0", "--bootstrap", "0",
             "--no-audio-audit", "--precision", "fp32", "--quiet", "--no-tensorboard", "--park-dim", "16",
             "--park-ffn", "16", "--epochs", "1"]


@pytest.fixture(scope="module")
def park_runs(tmp_path_factory):
    """Park et al.'s two steps on tiny data: the speaker network (URDU speakers), the emotion network (a URDU
    hold-out), then their integration with the speaker network frozen; learning rates of 1e-12 in the last step, so
    that its exported weights show where it started."""
    from conftest import FIXTURES

    tiny = require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint fixtures")
    root = require(URDU, "URDU corpus")
    base = tmp_path_factory.mktemp("park")
    for label in ("Angry", "Happy", "Neutral", "Sad"):
        (base / "audio" / label).mkdir(parents=True)
        for f in sorted((root / label).glob("*.wav"))[:6]:
            (base / "audio" / label / f.name).symlink_to(f)
    data = base / "manifest"
    assert run("prepare", "urdu", "--root", base / "audio", "--out", data, "--protocol", "holdout",
               "--no-audio-audit", "--quiet") == 0
    spk, emo, both = base / "speaker", base / "emotion", base / "aware"
    assert run("finetune", "--checkpoint", tiny, "--data", data, "--out", spk, "--task", "speaker",
               "--min-speaker-utterances", "4", "--park-blocks", "1", *PARK_FAST) == 0
    assert run("finetune", "--checkpoint", tiny, "--data", data, "--out", emo, "--park-blocks", "2", "--head",
               "arcface", *PARK_FAST) == 0
    assert run("finetune", "--checkpoint", tiny, "--data", data, "--out", both, "--start-from", emo, "--init-head",
               "keep", "--speaker-model", spk / "models" / "speaker", "--fusion", "park", "--park-blocks", "2",
               "--head", "arcface", "--lr", "1e-12", "--head-lr", "1e-12", "--clip-norm", "100", "--repeat-pad", "1",
               *PARK_FAST) == 0
    return tiny, data, spk, emo, both


def test_park_two_step_training_integrates_each_folds_emotion_network(park_runs):
    from safetensors.torch import load_file

    tiny, data, spk, emo, both = park_runs
    spk_meta = json.loads((spk / "models" / "speaker" / "config.json").read_text())["classifier"]
    assert spk_meta["kind"] == "park" and spk_meta["config"]["park"]["network"] == "speaker"
    emo_head = load_file(emo / "models" / "holdout" / "head.safetensors")
    assert emo_head["fusion"].shape == (2, 16)
    aware_meta = json.loads((both / "models" / "holdout" / "config.json").read_text())["classifier"]
    assert aware_meta["config"]["fusion"] == "park" and aware_meta["config"]["park"]["extra_vectors"] == 1
    aware_head = load_file(both / "models" / "holdout" / "head.safetensors")
    assert torch.allclose(aware_head["fusion"][:2], emo_head["fusion"], atol=1e-6)  # the trained rows kept
    assert torch.allclose(aware_head["fusion"][2], torch.ones(16))  # the speaker's row starts at 1
    spk_weights = load_file(spk / "models" / "speaker" / "head.safetensors")
    assert torch.equal(aware_head["speaker.head.fc.weight"], spk_weights["fc.weight"])  # frozen speaker network
    start = load_file(emo / "models" / "holdout" / "model.safetensors")
    tuned = load_file(both / "models" / "holdout" / "model.safetensors")
    assert all(torch.allclose(tuned[k], v, atol=1e-6) for k, v in start.items())  # started from fold's model
    result = json.loads((both / "results.json").read_text())
    assert result["config"]["park_blocks"] == 2 and result["config"]["fusion"] == "park"
    rows = {r["key"]: r for r in csv.DictReader(open(data / "data.tsv"), delimiter="\t")}
    fold = json.loads((both / "holdout" / "result.json").read_text())
    scores = Emotion2Vec.from_checkpoint(both / "models" / "holdout").predict(rows[fold["test_keys"][0]]["path"])
    order = aware_meta["labels"]
    assert np.abs(np.array([scores["scores"][c] for c in order]) - fold["predictions"][0]).max() < 1e-4
    assert "| Speaker-specific emotion representation network | ArcFace | WA | – | " in \
        __import__("emotion2vec.analysis.park_tables", fromlist=["x"]).park_tables([result])


def test_park_options_that_do_not_go_together_are_named(park_runs, capsys):
    tiny, data, spk, emo, _ = park_runs
    cases = [
        (["--fusion", "park", "--speaker-model", str(spk / "models" / "speaker")], "needs their emotion network"),
        (["--park-blocks", "2", "--speaker-model", str(spk / "models" / "speaker")], "use --fusion park"),
        (["--task", "speaker", "--park-blocks", "2"], "one attention block"),
        (["--park-blocks", "2", "--pooling", "attention"], "max-pools its attention blocks"),
        (["--park-blocks", "3", "--start-from", str(emo), "--init-head", "keep"], "has 2 attention blocks"),
        (["--start-from", str(spk)], "no model for fold holdout"),
        (["--speaker-train", "head"], "needs --fusion park"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert run("finetune", "--checkpoint", tiny, "--data", data, "--out", "/nonexistent/x", *args,
                   "--quiet") == 2, args
        assert message in capsys.readouterr().err, (args, message)


def test_speaker_network_on_the_official_identification_split(tmp_path):
    from conftest import FIXTURES

    tiny = require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint fixtures")
    root = tmp_path / "VoxCeleb1"
    lines = []
    for s, speaker in enumerate(("id10001", "id10002")):
        for n in range(1, 7):
            rel = f"{speaker}/vid{n % 2}/{n:05d}.wav"
            _tone(root / "wav" / rel, seconds=1.0, seed=s * 10 + n)
            lines.append(f"{1 if n <= 4 else 2 if n == 5 else 3} {rel}")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    data = tmp_path / "vox"
    assert run("prepare", "voxceleb1", "--root", root, "--out", data, "--no-audio-audit", "--quiet") == 0
    out = tmp_path / "spk"
    assert run("finetune", "--checkpoint", tiny, "--data", data, "--out", out, "--task", "speaker",
               "--speaker-split", "official", "--park-blocks", "1", "--head", "linear", *PARK_FAST) == 0
    fold = json.loads((out / "speaker" / "result.json").read_text())
    assert (fold["n_train"], fold["n_valid"], fold["n_test"]) == (8, 2, 2)
    assert sorted(fold["test_keys"]) == ["id10001/vid0/00006", "id10002/vid0/00006"]


# ------------------------------------------------------------------------------------------------ recipes
@pytest.mark.parametrize("recipe,expected", [
    ("park_iemocap.sh", 2 + 2 + 8 + 8 + 4 + 1),  # prepare, speaker, emotion 4 x 2, aware 4 x 2, joint 2 x 2, report
    ("emo_superb.sh", 9 * 3 + 1),             # per condition: prepare, extract, probe; the table
])
def test_paper_recipes_print_commands_every_parser_accepts(recipe, expected, tmp_path):
    import shlex
    import subprocess

    from emotion2vec.cli import build_parser

    repo = Path(__file__).resolve().parents[1]
    env = {**__import__("os").environ, "PRINT": "1", "OUT": str(tmp_path), "CHECKPOINT": "hf:facebook/wav2vec2-base",
           "BETAS": "0.1 1"}
    proc = subprocess.run(["bash", str(repo / "recipes" / recipe)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [shlex.split(line) for line in proc.stdout.splitlines() if line.startswith("emotion2vec ")]
    assert len(lines) == expected
    for argv in lines:
        build_parser(argv[1]).parse_args(argv[1:])  # argparse exits 2 on any unknown or malformed option
    commands = [" ".join(a) for a in lines]
    assert all("hf:facebook/wav2vec2-base" in c for c in commands if " finetune " in c or " extract " in c)
    assert "--layout" in commands[-1]
    if recipe == "park_iemocap.sh":
        aware = [c for c in commands if "--fusion park" in c]
        assert len(aware) == 12 and all("--start-from" in c and "speaker_arcface/models/speaker" in c for c in aware)
        assert sum("--speaker-train all --emotion-weight 1 --id-weight 0.1" in c for c in commands) == 1
    else:
        assert sum("--condition S" in c for c in commands) == 3 and any("Test1,Test2" in c for c in commands)


@pytest.mark.parametrize("mode", ["head", "all"])
def test_park_joint_training_by_eq6_trains_the_speaker_network(park_runs, mode, tmp_path):
    """Their Fig. 7b-c: the speaker network trains with the emotion network on alpha L_emo + beta L_id (ArcFace over
    the fold's training speakers); ``head`` keeps the speaker model's upstream, ``all`` trains it but its CNN."""
    from safetensors.torch import load_file

    tiny, data, spk, emo, _ = park_runs
    out = tmp_path / mode
    assert run("finetune", "--checkpoint", tiny, "--data", data, "--out", out, "--start-from", emo, "--init-head",
               "keep", "--speaker-model", spk / "models" / "speaker", "--fusion", "park", "--park-blocks", "2",
               "--head", "arcface", "--speaker-train", mode, "--emotion-weight", "0.5", "--id-weight", "2",
               "--lr", "1e-3", "--head-lr", "1e-2", *PARK_FAST) == 0
    tuned = load_file(out / "models" / "holdout" / "head.safetensors")
    assert not any(k.startswith("speaker.id_output.") for k in tuned)  # the identification layer is not exported
    before_head = load_file(spk / "models" / "speaker" / "head.safetensors")
    assert not torch.equal(tuned["speaker.head.fc.weight"], before_head["fc.weight"])  # the speaker network trained
    before = load_file(spk / "models" / "speaker" / "model.safetensors")
    after = {k[len("speaker.upstream."):]: v for k, v in tuned.items() if k.startswith("speaker.upstream.")}
    changed = {k for k, v in before.items() if not torch.equal(after[k], v)}
    if mode == "head":
        assert not changed
    else:
        assert changed and not any(k.startswith("feature_extractor.") for k in changed)
    rows = {r["key"]: r for r in csv.DictReader(open(data / "data.tsv"), delimiter="\t")}
    fold = json.loads((out / "holdout" / "result.json").read_text())
    scores = Emotion2Vec.from_checkpoint(out / "models" / "holdout").predict(rows[fold["test_keys"][0]]["path"])
    order = json.loads((out / "models" / "holdout" / "config.json").read_text())["classifier"]["labels"]
    assert np.abs(np.array([scores["scores"][c] for c in order]) - fold["predictions"][0]).max() < 1e-4
