"""Workflows end to end: defaults that work and failures that speak (regression on URDU-derived targets, planted
divergence and collapse), the paper options (pooling, Wagner's head, AdamW, per-epoch decay, under-sampling,
calibration error), evaluate, fine-tuned runs everywhere, pruning, and the ablation pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import URDU, require, urdu_subset
from emotion2vec.cli import main as cli
from emotion2vec.downstream import ProbeError
from emotion2vec.downstream.epochs import lr_decay_factor, undersample
from emotion2vec.downstream.heads import Head, HeadConfig, fold_target_scaling
from emotion2vec.downstream.probe import run_probe
from emotion2vec.downstream.runs import DivergenceError, Selection, collapse_warnings
from emotion2vec.downstream.training import ProbeConfig
from emotion2vec.analysis import AnalysisError
from emotion2vec.analysis.evaluate import run_evaluate
from test_probe import synthetic_corpus, write_features

AROUSAL = {"angry": 0.8, "happy": 0.7, "neutral": 0.3, "sad": 0.2}
VALENCE = {"angry": 0.2, "happy": 0.8, "neutral": 0.5, "sad": 0.2}


pytestmark = pytest.mark.usefixtures("one_thread")  # in-process runs on one thread, as the subprocesses


# ------------------------------------------------------------------------------------------------ URDU fixtures
@pytest.fixture(scope="module")
def urdu_small(tmp_path_factory) -> Path:
    """20 URDU clips per emotion (symlinked), prepared (random 10-fold), fbank utterance features, and arousal /
    valence columns derived from the labels plus noise (sd 0.1, seed 0), as benchmarks/regression_defaults.py."""
    from emotion2vec.io.manifests import read_data_tsv, write_data_tsv

    root = require(URDU, "URDU corpus")
    base = tmp_path_factory.mktemp("urdu_small")
    for label in ("Angry", "Happy", "Neutral", "Sad"):
        (base / "audio" / label).mkdir(parents=True)
        for f in sorted((root / label).glob("*.wav"))[:20]:
            (base / "audio" / label / f.name).symlink_to(f)
    assert cli(["prepare", "urdu", "--root", str(base / "audio"), "--out", str(base / "m"), "--quiet",
                "--no-audio-audit"]) == 0
    rows = read_data_tsv(base / "m" / "data.tsv")
    rng = np.random.default_rng(0)
    for r in rows:
        r["arousal"] = f"{float(np.clip(AROUSAL[r['label']] + rng.normal(0, 0.1), 0, 1)):.4f}"
        r["valence"] = f"{float(np.clip(VALENCE[r['label']] + rng.normal(0, 0.1), 0, 1)):.4f}"
    write_data_tsv(base / "m" / "data.tsv", rows)
    assert cli(["extract", "--checkpoint", "fbank", "--input", str(base / "m" / "data.tsv"), "--out",
                str(base / "fbank"), "--granularity", "utterance", "--quiet", "--num-workers", "0"]) == 0
    return base


# ------------------------------------------------------------------------------------------------ 1. defaults
def test_regression_defaults_reach_ccc_where_the_official_recipe_fails_loudly(urdu_small, capsys):
    data, feats = urdu_small / "m", urdu_small / "fbank"
    common = ["probe", "--features", str(feats), "--data", str(data), "--task", "regression", "--targets",
              "arousal,valence", "--folds", "1,2,3", "--bootstrap", "0", "--no-audio-audit", "--quiet"]
    assert cli([*common, "--out", str(urdu_small / "defaults")]) == 0
    good = json.loads((urdu_small / "defaults" / "results.json").read_text())
    assert good["summary"]["ccc"]["mean"] > 0.5 and good["warnings"] == []
    assert (good["config"]["optimizer"], good["config"]["scheduler"], good["config"]["standardize"],
            good["config"]["standardize_targets"]) == ("adamw", "none", True, True)
    # the saved head predicts on the targets' own scale (the standardisation is folded into its output layer)
    pred = np.loadtxt(urdu_small / "defaults" / "predictions.tsv", skiprows=1, usecols=(4, 5), delimiter="\t")
    assert 0.1 < pred.mean() < 0.9 and good["summary"]["mae"]["mean"] < 0.3
    # the official recipe (RMSprop with momentum, cyclic lr, raw features) diverges: said at the top of results.md
    assert cli([*common, "--out", str(urdu_small / "official"), "--optimizer", "rmsprop", "--scheduler", "cyclic",
                "--no-standardize", "--no-standardize-targets"]) == 0
    bad = json.loads((urdu_small / "official" / "results.json").read_text())
    assert bad["summary"]["ccc"]["mean"] < good["summary"]["ccc"]["mean"] - 0.4
    assert any("far-off predictions: arousal averages" in w and "--optimizer adamw" in w for w in bad["warnings"])
    md = (urdu_small / "official" / "results.md").read_text().splitlines()
    assert md[2] == "**WARNINGS:**" and "far-off predictions" in md[3]


def test_planted_collapse_and_divergence(tmp_path, capsys):
    fdir, ddir, feats, labels_of, folds = synthetic_corpus(tmp_path, "utterance", n=40, dim=8, n_folds=2)
    # constant features: the head can only predict one class for every utterance
    flat = write_features(tmp_path / "flat", {k: np.ones_like(v) for k, v in feats.items()}, "utterance")
    r = run_probe(flat, ddir, tmp_path / "flat_run", ProbeConfig(epochs=3, bootstrap=0), verbose=False,
                  audit_audio=False)
    assert any(w.startswith("fold1: collapsed predictions:") and "for every one of the 20 test utterances, which "
               "carry 4 labels" in w for w in r["warnings"])
    assert (tmp_path / "flat_run" / "results.md").read_text().splitlines()[2] == "**WARNINGS:**"
    assert r["folds"][0]["warnings"] and "collapsed" in r["folds"][0]["warnings"][0]
    # a learning rate far too large: the loss grows far above its start (a warning), then the outputs overflow and
    # the run stops, naming the epoch and the options to change
    r = run_probe(fdir, ddir, None, ProbeConfig(epochs=2, bootstrap=0, lr=1e10), verbose=False, audit_audio=False)
    assert any(w.startswith("fold1: training diverged: the training loss rose from") and "lower --lr" in w
               for w in r["warnings"])
    with pytest.raises(DivergenceError, match=r"training diverged: after epoch 1 the model's valid outputs are not "
                                              r"finite for \d+ of \d+ utterance\(s\); lower --lr"):
        run_probe(fdir, ddir, None, ProbeConfig(epochs=3, bootstrap=0, lr=1e20), verbose=False, audit_audio=False)
    assert cli(["probe", "--features", str(fdir), "--data", str(ddir), "--out", str(tmp_path / "h"), "--epochs", "2",
                "--lr", "1e20", "--quiet", "--no-audio-audit"]) == 2
    assert "training diverged" in capsys.readouterr().err and not (tmp_path / "h" / "results.json").exists()


def test_selection_warns_of_a_growing_loss_and_collapse_rules_by_hand():
    s = Selection("ua", hint="lower --lr")
    s.train_epoch(1.0)
    s.train_epoch(9.0)
    assert s.warnings == []
    s.train_epoch(10.5)
    s.train_epoch(50.0)
    assert s.warnings == ["training diverged: the training loss rose from 1 (epoch 1) to 10.5 (epoch 3), more than "
                          "10 times its start; lower --lr"]
    with pytest.raises(DivergenceError, match="epoch 5 is inf \\(epoch 1: 1\\); lower --lr"):
        s.train_epoch(math.inf)
    y = np.array([[0.2], [0.4], [0.6], [0.8]])
    assert collapse_warnings("regression", y + 0.01, y, ["a"], None) == []
    assert "is (nearly) constant" in collapse_warnings("regression", np.full((4, 1), 0.5), y, ["a"], None)[0]
    assert "averages 100.5" in collapse_warnings("regression", y + 100, y, ["a"], None, "x")[0]
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    assert collapse_warnings("categorical", probs, np.array([0, 1, 0]), ["p", "q"], None) == [
        "collapsed predictions: p for every one of the 3 test utterances, which carry 2 labels"]
    assert collapse_warnings("categorical", probs, np.array([0, 0, 0]), ["p", "q"], None) == []
    ml = np.array([[0.9, 0.1], [0.9, 0.2]])
    assert "p for every one of the 2" in collapse_warnings("multilabel", ml, np.array([[1, 0], [0, 1]]), ["p", "q"],
                                                           None)[0]


# ------------------------------------------------------------------------------------------------ 4. paper options
def test_epoch_recipes_by_hand():
    assert lr_decay_factor(1) == 1.0 and lr_decay_factor(3, 0.98) == pytest.approx(0.98 ** 2)
    labels = np.array([0] * 10 + [1] * 3 + [2] * 5)
    a, b = undersample(labels, 0, 1), undersample(labels, 0, 2)
    assert np.bincount(labels[a]).tolist() == [3, 3, 3] and np.bincount(labels[b]).tolist() == [3, 3, 3]
    assert set(a[labels[a] == 1]) == {10, 11, 12}  # the smallest class is kept whole
    assert not np.array_equal(a, b) and np.array_equal(a, undersample(labels, 0, 1))  # fresh per epoch, seeded


def test_sum_max_pooling_and_wagner_head_by_hand():
    torch.manual_seed(0)
    frames = torch.randn(5, 3)
    segments, lengths = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([3, 2])
    for pooling, expected in (("sum", torch.stack([frames[:3].sum(0), frames[3:].sum(0)])),
                              ("max", torch.stack([frames[:3].max(0).values, frames[3:].max(0).values]))):
        head = Head(HeadConfig(3, 2, hidden=4, pooling=pooling, layout="pooled")).eval()
        pooled = head.pooling(frames, segments, lengths)
        torch.testing.assert_close(pooled, expected)
        # Wagner et al.: pool -> dropout -> Linear -> tanh -> dropout -> output
        want = head.output(torch.tanh(head.proj(expected)))
        torch.testing.assert_close(head.forward_packed(frames, segments, lengths), want)
    # max pooling passes the gradient to the frame holding the maximum
    x = frames.clone().requires_grad_(True)
    Head(HeadConfig(3, 2, hidden=4, pooling="max", layout="pooled")).pooling(x, segments, lengths).sum().backward()
    assert x.grad.sum().item() == 6 and set(x.grad.flatten().tolist()) == {0.0, 1.0}
    # folding the target standardisation into the output layer
    head = Head(HeadConfig(3, 2, hidden=4))
    before = head(frames[:2])
    fold_target_scaling(head, np.array([1.0, -2.0]), np.array([2.0, 0.5]))
    torch.testing.assert_close(head(frames[:2]), before * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -2.0]))


def test_paper_options_train_on_frames(tmp_path, capsys):
    fdir, ddir, *_ = synthetic_corpus(tmp_path, "frame", n=48, dim=12, n_folds=2)
    for options in (dict(pooling="sum"), dict(pooling="max", head="wagner", dropout=0.1),
                    dict(optimizer="adamw", scheduler="exponential", lr_decay=0.9, undersample=True)):
        r = run_probe(fdir, ddir, None, ProbeConfig(epochs=15, batch_size=8, bootstrap=0, **options), verbose=False,
                      audit_audio=False)
        assert r["summary"]["ua"]["mean"] > 0.8, options
        assert all(k in r["summary"] for k in ("wa", "ua", "wf1", "macro_f1", "ece"))
    with pytest.raises(ProbeError, match="--undersample balances the classes"):
        ProbeConfig(task="regression", targets=("a",), undersample=True)
    with pytest.raises(SystemExit) as e:
        cli(["probe", "--features", str(fdir), "--data", str(ddir), "--out", str(tmp_path / "x"), "--lr-decay", "1.5"])
    assert e.value.code == 2 and "argument --lr-decay: must lie in (0, 1], got 1.5" in \
        capsys.readouterr().err


def test_expected_calibration_error_by_hand():
    from emotion2vec.downstream.metrics import expected_calibration_error, task_metrics

    # confidences 0.95 (bin 14: 2 utterances, 1 right) and 0.55 (bin 8: 2 utterances, both right)
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55], [0.55, 0.45]])
    t = np.array([0, 1, 1, 0])
    assert expected_calibration_error(p, t) == pytest.approx(0.5 * abs(0.5 - 0.95) + 0.5 * abs(1.0 - 0.55))
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0  # certain and right: perfectly calibrated
    assert task_metrics("categorical", p, t, ["a", "b"])["ece"] == pytest.approx(0.45)


# ------------------------------------------------------------------------------------------------ 3. fine-tuned runs
FT_FAST = ["--max-seconds", "1", "--batch-seconds", "4", "--num-workers", "0", "--lr", "1e-3", "--head-lr", "1e-2",
           "--bootstrap", "0", "--no-audio-audit", "--precision", "fp32", "--quiet", "--no-tensorboard"]


@pytest.fixture(scope="module")
def tiny() -> Path:
    from conftest import FIXTURES

    return require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint fixtures")


@pytest.fixture(scope="module")
def subset(tmp_path_factory) -> Path:
    """8 clips per emotion, one hold-out fold (23 train, 3 valid, 6 test), with arousal / valence columns."""
    from emotion2vec.io.manifests import read_data_tsv, write_data_tsv

    out = urdu_subset(tmp_path_factory.mktemp("subset"))
    rows = read_data_tsv(out / "data.tsv")
    for r in rows:
        r["arousal"], r["valence"] = f"{AROUSAL[r['label']]:.2f}", f"{VALENCE[r['label']]:.2f}"
    write_data_tsv(out / "data.tsv", rows)
    return out


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> Path:
    """Another corpus: 3 other URDU clips per emotion, labels spelt anger / joy / neutral / sadness, one holdout."""
    from emotion2vec.io.manifests import write_data_tsv

    root = require(URDU, "URDU corpus")
    base = tmp_path_factory.mktemp("other") / "other"
    spelt = {"Angry": "anger", "Happy": "joy", "Neutral": "neutral", "Sad": "sadness"}
    rows = [{"key": f"{label}/{f.stem}", "path": str(f), "label": spelt[label], "speaker": f.stem.split("_")[0],
             "gender": f.stem[1], "duration": "1.0"}
            for label in spelt for f in sorted((root / label).glob("*.wav"))[20:23]]
    base.mkdir(parents=True)
    write_data_tsv(base / "data.tsv", rows)
    return base


@pytest.fixture(scope="module")
def ft_run(tiny, subset, other, tmp_path_factory) -> Path:
    """A fine-tuning run with the paper options: the head on block 1 (the blocks above pruned), Wagner's head with
    max pooling, x0.9 per epoch, under-sampled epochs, the dev set scored every 2 updates; every fold's model scored
    on another corpus too."""
    out = tmp_path_factory.mktemp("ft") / "run"
    assert cli(["finetune", "--checkpoint", str(tiny), "--data", str(subset), "--out", str(out), "--epochs", "2",
                "--layer", "1", "--head", "wagner", "--pooling", "max", "--schedule", "exponential", "--lr-decay",
                "0.9", "--undersample", "--eval-interval-updates", "2", "--speaker-min-utterances", "1",
                "--test-data", str(other), "--test-label-map", "anger=angry,joy=happy,sadness=sad", "--embedding",
                "--embedding-colour", "gender", *FT_FAST]) == 0
    return out


def test_finetuned_run_is_first_class(ft_run, subset, tiny):
    from emotion2vec.analysis.runs import load_run
    from emotion2vec.models.upstream import load_upstream

    result = json.loads((ft_run / "results.json").read_text())
    fold = result["folds"][0]
    assert result["kind"] == "finetune" and result["head"]["type"] == "wagner"
    assert result["config"]["schedule"] == "exponential" and result["config"]["undersample"]
    # the dev set scored every 2 updates and at every epoch's end: more scorings than epochs, the best step kept
    assert len(fold["history"]["valid_ua"]) > fold["epochs_run"] and fold["best_update"] >= 1
    # valid predictions (ensembles), fairness and per-speaker analysis, as a probe's
    run = load_run(ft_run)
    assert run.valid is not None and len(run.valid) == fold["n_valid"] and len(run.test) == fold["n_test"]
    assert set(result["groups"]["gender"]["values"]) <= {"F", "M"} and result["speakers"]["speakers"]
    # the exported model has the blocks up to layer 1 only (1 prenet + 2 main blocks before: now 2 blocks)
    model, info = load_upstream(ft_run / "models" / "holdout")
    full, _ = load_upstream(tiny)
    assert model.cfg.num_layers == 2 and full.cfg.num_layers == 3
    assert info.classifier.config["layer"] == 1 and info.classifier.config["head"]["layout"] == "pooled"
    assert any("pruned: the 1 block(s) above layer 1 removed (2 of 3 kept)" in n for n in result["notes"])
    # the embedding map of a fine-tuned model: its upstream's features beside its head's hidden layer, by gender
    assert result["embedding"] == {"fold": "holdout", "method": result["embedding"]["method"], "utterances": 6,
                                   "coloured_by": "gender"}
    assert (ft_run / "embedding.png").stat().st_size > 1000


def test_finetune_scores_every_fold_on_another_corpus(ft_run, other, tiny, subset, tmp_path, capsys):
    from emotion2vec.analysis.runs import load_run

    result = json.loads((ft_run / "results.json").read_text())
    (entry,) = result["test_data"]
    assert entry["data"] == str(other) and entry["results"] == str(ft_run / "test_other")
    cross = json.loads((ft_run / "test_other" / "results.json").read_text())
    assert cross["kind"] == "evaluate" and cross["folds"][0]["name"] == "holdout" and cross["folds"][0]["n_test"] == 12
    assert cross["evaluate"]["label_map"] == {"anger": "angry", "joy": "happy", "sadness": "sad"}
    assert entry["summary"] == cross["summary"] and len(load_run(ft_run / "test_other").test) == 12
    assert f"- tested on `{other}` (other" in (ft_run / "results.md").read_text()
    # labels the run never learned: refused before anything is written
    out = tmp_path / "refused"
    assert cli(["finetune", "--checkpoint", str(tiny), "--data", str(subset), "--out", str(out), "--epochs", "1",
                "--test-data", str(other), *FT_FAST]) == 2
    err = capsys.readouterr().err
    assert "label(s) the model never learned" in err and "anger (3 utterance(s))" in err and "--test-label-map" in err
    assert not out.exists()


def test_a_diverging_fine_tuning_run_stops_and_names_the_options(tiny, subset, tmp_path, capsys):
    out = tmp_path / "diverged"
    assert cli(["finetune", "--checkpoint", str(tiny), "--data", str(subset), "--out", str(out), "--epochs", "1",
                *FT_FAST, "--lr", "1e30", "--head-lr", "1e30", "--clip-norm", "0"]) == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "lower --lr and --head-lr" in err
    assert not (out / "results.json").exists()


def test_pruning_keeps_the_layer_and_shrinks_the_model(tiny, tmp_path):
    from emotion2vec.models.checkpoint import save_checkpoint_dir
    from emotion2vec.models.prune import prune_upstream
    from emotion2vec.models.upstream import load_upstream

    full, _ = load_upstream(tiny)
    torch.manual_seed(0)
    wav = torch.randn(2, 16000)
    with torch.no_grad():
        want = full.extract_features(wav, layers=[1, 0]).layer_outputs
    for layer in (1, 0):  # after the prenet block, and inside the prenet (the kept block becomes the main block)
        model, _ = load_upstream(tiny)
        notes = prune_upstream(model, layer)
        assert model.cfg.num_layers == layer + 1 and notes
        with torch.no_grad():
            torch.testing.assert_close(model.extract_features(wav).x, want[layer])
        save_checkpoint_dir(tmp_path / f"l{layer}", model.cfg, model.state_dict())
        again, _ = load_upstream(tmp_path / f"l{layer}")
        with torch.no_grad():
            torch.testing.assert_close(again.extract_features(wav).x, want[layer])
    save_checkpoint_dir(tmp_path / "full", full.cfg, full.state_dict())
    sizes = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("full", "l1", "l0")}
    assert sizes["l0"] < sizes["l1"] < sizes["full"]


def test_finetune_sweep_of_train_fractions(tiny, subset, tmp_path):
    out = tmp_path / "sweep"
    assert cli(["finetune", "--checkpoint", str(tiny), "--data", str(subset), "--out", str(out), "--epochs", "1",
                "--train-fraction", "0.5,1", "--freeze", "all-but-top", "0", *FT_FAST]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["kind"] == "finetune" and [b["fraction"] for b in sweep["by_fraction"]] == [0.5, 1.0]
    half, whole = (json.loads((out / d / "results.json").read_text()) for d in ("fraction_0.5", "fraction_1"))
    assert half["train_fraction"] == 0.5 and half["folds"][0]["n_train"] < whole["folds"][0]["n_train"]
    assert half["folds"][0]["n_test"] == whole["folds"][0]["n_test"]
    assert (out / "results.md").read_text().startswith("# Fine-tuning sweep: URDU")


def test_robustness_reruns_the_fine_tuned_models(ft_run, subset, tmp_path):
    from emotion2vec.analysis.runs import load_run

    out = tmp_path / "robust"
    assert cli(["robustness", str(ft_run), "--data", str(subset), "--out", str(out), "--perturbations",
                "gain,white-noise", "--quiet"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert [e["name"] for e in result["perturbations"]] == ["gain", "white-noise"]
    assert result["utterances"] == 6 and result["feature_source"] == str(ft_run / "models")
    # the clean pass through the exported model reproduces the run's own predictions
    assert result["clean_agreement"] == 1.0
    changes = (out / "changes.tsv").read_text().splitlines()
    assert len(changes) == 1 + 2 * 6
    run = load_run(ft_run)
    clean = {line.split("\t")[1]: line.split("\t")[4] for line in changes[1:]}
    assert all(clean[k] == run.names[int(p.argmax())] for k, p in zip(run.test.keys, run.test.predicted))


# ------------------------------------------------------------------------------------------------ 2. evaluate
def _audeering_like(folder: Path, seed: int = 0):
    """A tiny random model in the folder layout of audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim: a
    Wav2Vec2ForSpeechClassification checkpoint (wav2vec2.* encoder weights, classifier.dense / classifier.out_proj
    regression head) whose config maps 0, 1, 2 to arousal, dominance, valence. -> (encoder, dense, out_proj)."""
    transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
    from safetensors.torch import save_file

    config = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
        do_stable_layer_norm=True, architectures=["Wav2Vec2ForSpeechClassification"], finetuning_task="wav2vec2_reg",
        id2label={0: "arousal", 1: "dominance", 2: "valence"}, label2id={"arousal": 0, "dominance": 1, "valence": 2},
        final_dropout=0.1)
    torch.manual_seed(seed)
    encoder = transformers.Wav2Vec2Model(config).eval()
    dense, out_proj = torch.nn.Linear(32, 32), torch.nn.Linear(32, 3)
    with torch.no_grad():
        out_proj.bias.copy_(torch.tensor([0.5, 0.5, 0.5]))  # outputs near the middle of the 0...1 scale
    state = {f"wav2vec2.{k}": v for k, v in encoder.state_dict().items()}
    state.update({"classifier.dense.weight": dense.weight, "classifier.dense.bias": dense.bias,
                  "classifier.out_proj.weight": out_proj.weight, "classifier.out_proj.bias": out_proj.bias})
    folder.mkdir(parents=True)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, folder / "model.safetensors")
    config.save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return encoder, dense, out_proj


def test_evaluate_audeerings_dimensional_model_from_its_own_files(subset, tmp_path):
    from emotion2vec.analysis.inference import ModelPredictor
    from emotion2vec.io.audio import load_audio
    from emotion2vec.io.manifests import read_data_tsv

    encoder, dense, out_proj = _audeering_like(tmp_path / "audeering")
    model = ModelPredictor(f"hf:{tmp_path / 'audeering'}")
    # the model card's order (id2label) and scale (the head's values as they come: no activation)
    assert (model.task, model.names) == ("regression", ["arousal", "dominance", "valence"])
    rows = read_data_tsv(subset / "data.tsv")[:3]
    wavs = [load_audio(r["path"]) for r in rows]
    got = model(wavs)
    for wav, row in zip(wavs, got):  # the model card's forward: mean of the last hidden states -> dense, tanh, out_proj
        x = torch.as_tensor(wav, dtype=torch.float32)[None]
        x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        with torch.no_grad():
            want = out_proj(torch.tanh(dense(encoder(x).last_hidden_state.mean(1))))[0].numpy()
        np.testing.assert_allclose(row, want, atol=1e-5)
    # evaluate on the corpus's arousal / valence columns (no dominance there: the model's third output is left out)
    r = run_evaluate(f"hf:{tmp_path / 'audeering'}", subset, tmp_path / "ev", bootstrap=0, verbose=False,
                     audit_audio=False)
    assert r["kind"] == "evaluate" and r["task"] == "regression" and r["targets"] == ["arousal", "valence"]
    assert [f["name"] for f in r["folds"]] == ["all"] and r["folds"][0]["n_test"] == 32
    assert "the training data of hf:" in " ".join(r["notes"]) and r["audit"] is None
    header = (tmp_path / "ev" / "predictions.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["fold", "key", "true_arousal", "true_valence", "pred_arousal", "pred_valence"]
    # --target-range maps the ratings onto [0, 1]: 0.8 on [0, 2] is 0.4
    mapped = run_evaluate(f"hf:{tmp_path / 'audeering'}", subset, None, targets=["arousal"], target_range=(0.0, 2.0),
                          bootstrap=0, verbose=False, audit_audio=False)
    assert mapped["targets"] == ["arousal"]


def test_evaluate_runs_and_released_models_on_a_corpus(ft_run, subset, tiny, tmp_path, capsys):
    from conftest import FIXTURES
    from emotion2vec.analysis.runs import load_run

    # a fine-tuning run on its own corpus, fold by fold: its predictions reproduced, valid predictions written
    r = run_evaluate(str(ft_run), subset, tmp_path / "ft_eval", folds="all", bootstrap=0, speaker_min=1,
                     verbose=False, audit_audio=False)
    run, again = load_run(ft_run), load_run(tmp_path / "ft_eval")
    np.testing.assert_allclose(again.test.predicted, run.test.predicted, atol=1e-5)
    assert again.valid is not None and len(again.valid) == 3 and r["folds"][0]["valid"]
    assert r["evaluate"]["trained_on"]["holdout"]["data"] == str(subset.resolve())
    assert "speakers" in r and "groups" in r and r["protocol"] == "holdout"
    # the test set is held out from the run's own training data: the audit finds no trained-on utterance
    assert not any("were in the training data" in w for w in r["warnings"])
    # the same model on every utterance: the training utterances are named loudly
    whole = run_evaluate(str(ft_run), subset, None, bootstrap=0, verbose=False, audit_audio=False)
    assert any(w.startswith("holdout: 26 of its 32 test utterances were in the training data") for w in
               whole["warnings"])
    # an emotion2vec+ folder: 9 classes; its classes restricted to the corpus's with --only-corpus-classes
    plus = require(FIXTURES / "funasr_emotion2vec_plus", "golden checkpoint fixtures")
    full = run_evaluate(str(plus), subset, None, bootstrap=0, verbose=False, audit_audio=False)
    assert len(full["labels"]) == 9 and set(full["labels"]) >= {"angry", "happy", "neutral", "sad"}
    four = run_evaluate(str(plus), subset, tmp_path / "plus", only_corpus_classes=True, bootstrap=0, verbose=False,
                        audit_audio=False)
    assert four["labels"] == ["angry", "happy", "neutral", "sad"] and four["corpus"] == "urdu"
    p = load_run(tmp_path / "plus").test.predicted
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)  # predictions.tsv keeps 6 decimals
    # labels the model never learned: refused with a count per label, unless mapped
    assert cli(["evaluate", str(ft_run), "--data", str(subset), "--out", str(tmp_path / "x"), "--label-map",
                "angry=furious", "--no-audio-audit", "--quiet"]) == 2
    assert "label(s) the model never learned (its classes: angry, happy, neutral, sad): furious (8 utterance(s))" \
        in capsys.readouterr().err
    # a model without a head, and an ensemble folder, are refused by name
    assert cli(["evaluate", str(tiny), "--data", str(subset), "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "no classification or regression head in this model" in capsys.readouterr().err


def test_evaluate_a_probe_run_on_given_or_recomputed_features(urdu_small, tmp_path):
    from emotion2vec.analysis.runs import load_run

    data, feats = urdu_small / "m", urdu_small / "fbank"
    assert cli(["probe", "--features", str(feats), "--data", str(data), "--out", str(tmp_path / "p"), "--folds", "1,2",
                "--epochs", "10", "--bootstrap", "0", "--no-audio-audit", "--quiet", "--embedding",
                "--embedding-colour", "valence"]) == 0
    probe = load_run(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "results.json").read_text())["embedding"]["coloured_by"] == "valence group"
    given = run_evaluate(str(tmp_path / "p"), data, tmp_path / "given", features=str(feats), folds="1,2", bootstrap=0,
                         verbose=False, audit_audio=False)
    again = run_evaluate(str(tmp_path / "p"), data, tmp_path / "again", folds="1,2", bootstrap=0, verbose=False,
                         audit_audio=False)  # fbank recomputed from the audio, as the run's features.json says
    for out in ("given", "again"):
        np.testing.assert_allclose(load_run(tmp_path / out).test.predicted, probe.test.predicted, atol=1e-4)
        np.testing.assert_allclose(load_run(tmp_path / out).valid.predicted, probe.valid.predicted, atol=1e-4)
    assert given["summary"]["ua"]["mean"] == pytest.approx(json.loads((tmp_path / "p" / "results.json").read_text())
                                                           ["summary"]["ua"]["mean"], abs=1e-6)
    assert "recomputed with fbank" in again["features"]
    # the run's corpus: its own training utterances are not in its test folds; the report puts it beside the probe
    assert not any("were in the training data" in w for w in given["warnings"]) and given["audit"]["folds"]
    assert cli(["report", str(tmp_path / "p"), str(tmp_path / "given"), "--out", str(tmp_path / "t.md")]) == 0
    assert "| fbank (given) |" in (tmp_path / "t.md").read_text()


def test_ensemble_search_mixes_probe_fine_tuned_and_evaluate_runs(ft_run, subset, tmp_path):
    from conftest import FIXTURES

    assert cli(["extract", "--checkpoint", "fbank", "--input", str(subset / "data.tsv"), "--out", str(tmp_path / "f"),
                "--granularity", "utterance", "--quiet", "--num-workers", "0"]) == 0
    for seed in (1, 2):
        assert cli(["probe", "--features", str(tmp_path / "f"), "--data", str(subset), "--out",
                    str(tmp_path / f"p{seed}"), "--epochs", "10", "--seed", str(seed), "--bootstrap", "0",
                    "--no-audio-audit", "--quiet", "--name", f"fbank{seed}"]) == 0
    plus = require(FIXTURES / "funasr_emotion2vec_plus", "golden checkpoint fixtures")
    assert cli(["evaluate", str(plus), "--data", str(subset), "--out", str(tmp_path / "plus"), "--folds", "all",
                "--only-corpus-classes", "--bootstrap", "0", "--no-audio-audit", "--quiet"]) == 0
    runs = [str(tmp_path / "p1"), str(tmp_path / "p2"), str(ft_run), str(tmp_path / "plus")]
    assert cli(["ensemble", *runs, "--search", "all", "--weights", "dev", "--out", str(tmp_path / "E"),
                "--bootstrap", "0", "--quiet"]) == 0
    result = json.loads((tmp_path / "E" / "results.json").read_text())
    ranking = result["ensemble"]["search"]
    assert len(ranking) == 15 and ranking[0]["dev"] == max(e["dev"] for e in ranking)
    members = {Path(m["path"]).name: m for m in result["ensemble"]["members"]}
    assert set(members) == {"p1", "p2", "run", "plus"} and all(m["dev"] is not None for m in members.values())


def test_cross_corpus_probe_trains_on_the_official_split(tmp_path):
    from emotion2vec.io.manifests import read_data_tsv, write_data_tsv

    fa, da, *_ = synthetic_corpus(tmp_path / "a", "utterance", n=40, dim=8, n_folds=2, seed=1)
    fb, db, *_ = synthetic_corpus(tmp_path / "b", "utterance", n=20, dim=8, n_folds=2, seed=1)
    rows = read_data_tsv(da / "data.tsv")
    for i, r in enumerate(rows):
        r["split"] = ("train", "train", "valid", "test")[i % 4]
    write_data_tsv(da / "data.tsv", rows)
    r = run_probe(fa, da, tmp_path / "x", ProbeConfig(epochs=5, bootstrap=0), test_features=fb, test_data=db,
                  verbose=False, audit_audio=False, embedding="1", embedding_colour="corpus")
    (fold,) = r["folds"]
    assert r["cross_corpus"]["train_protocol"] == "original" and fold["name"] == "fold1"
    assert (fold["n_train"], fold["n_valid"], fold["n_test"]) == (20, 10, 20)  # the split's train / valid, all of B
    # the map of a cross-corpus run coloured by corpus: the training corpus's valid utterances beside the test corpus
    assert r["embedding"]["coloured_by"] == "corpus" and r["embedding"]["utterances"] == 30
    with pytest.raises(AnalysisError, match="--embedding-colour corpus needs utterances of two corpora"):
        run_probe(fa, da, tmp_path / "y", ProbeConfig(epochs=1, bootstrap=0), verbose=False, audit_audio=False,
                  embedding="1", embedding_colour="corpus")
    r = run_probe(fa, da, tmp_path / "z", ProbeConfig(epochs=1, bootstrap=0), verbose=False, audit_audio=False,
                  embedding="1", embedding_colour="speaker")
    assert r["embedding"]["coloured_by"] == "speaker"


def test_report_average_column_across_corpora():
    from emotion2vec.downstream import report
    from test_probe import fake_result

    results = [fake_result("iemocap", "fbank", [0.5, 0.6]), fake_result("iemocap", "e2v", [0.7, 0.7], [0.8, 0.6]),
               fake_result("urdu", "e2v", [0.9]), fake_result("urdu", "fbank", [0.3])]
    lines = report.make_table(results, metrics=("wa", "ua"), average=True).splitlines()
    assert lines[0] == "| Features | IEMOCAP WA | IEMOCAP UA | URDU WA | URDU UA | Average WA | Average UA |"
    assert lines[2].endswith("| 30.00 ± 0.00 | 30.00 ± 0.00 | 42.50 | 42.50 |")  # (55 + 30) / 2
    assert lines[3].endswith("| **90.00 ± 0.00** | **90.00 ± 0.00** | **80.00** | **80.00** |")  # (70 + 90) / 2
    assert "Average: the mean over the corpora's means" in lines[5]
    lines = report.make_table(results[:3], metrics=("wa",), average=True).splitlines()
    assert lines[2] == "| fbank | 55.00 ± 5.00 | – | – |"  # no URDU result: no average


# ------------------------------------------------------------------------------------------------ 5. ablations
def test_ablation_pipeline_on_a_cpu_writes_the_papers_table(tmp_path):
    """recipes/ablation.sh, CPU-sized: the tiny config pretrained for 2 updates through fairseq-hydra-train for two
    rows of Table 11 (alpha 0 and 1), URDU (8 clips per emotion) extracted with each model and probed on 2 folds of
    its 10-fold protocol, then Table 11 in the paper's layout."""
    import os
    import subprocess
    import sys

    pytest.importorskip("fairseq", reason="the fairseq extra is not installed (pip install -e .[train])")
    root = require(URDU, "URDU corpus")
    audio = tmp_path / "urdu"
    for label in ("Angry", "Happy", "Neutral", "Sad"):
        (audio / label).mkdir(parents=True)
        for f in sorted((root / label).glob("*.wav"))[:8]:
            (audio / label / f.name).symlink_to(f)
    # the pretraining manifest of symlinked clips (a corpus subset), converted to 16 kHz
    assert cli(["manifest", str(audio / "Angry"), "--out", str(tmp_path / "pre"), "--resample-to",
                str(tmp_path / "pre16k")]) == 0
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OUT=str(tmp_path / "out"), DATA=str(tmp_path / "pre"), INIT="null",
               CONFIG="emotion2vec_tiny_cpu", CORPUS="urdu", ROOT=str(audio), DEVICE="cpu", PYTHON=sys.executable,
               OMP_NUM_THREADS="1", PRETRAIN_ARGS="optimization.max_update=2 lr_scheduler.warmup_updates=1",
               EXTRACT_ARGS="--quiet --num-workers 0",
               PROBE_ARGS="--epochs 2 --folds 1,2 --bootstrap 0 --no-audio-audit --quiet")
    cmd = ["bash", str(repo / "recipes" / "ablation.sh"), "alpha_0", "alpha_1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = tmp_path / "out" / "results" / "ablation" / "urdu"
    table = (results / "tables.md").read_text().splitlines()
    assert table[0] == ("Table 11: Ablation study with the weight for utterance-level loss (URDU, random-kfold, "
                        "2 fold(s)).")
    assert table[2:4] == ["| Utt Loss α | WA(%) ↑ | UA(%) ↑ | WF1(%) ↑ |", "|---|---:|---:|---:|"]
    for line, row in zip(table[4:6], ("alpha_0", "alpha_1")):
        r = json.loads((results / row / "frm" / "results.json").read_text())
        assert line == ("| " + row.split("_")[1] + " | " + " | ".join(f"{100 * r['summary'][m]['mean']:.2f}"
                                                                       for m in ("wa", "ua", "wf1")) + " |")
        assert r["feature_settings"]["checkpoint"].endswith(f"outputs/ablation/{row}/checkpoint_last.pt")
    assert not any(line.startswith("Table 8") or line.startswith("Table 9") for line in table)
    # every row's model was pretrained with its overrides, for the updates asked
    from emotion2vec.models.checkpoint import read_checkpoint

    for row, alpha in (("alpha_0", 0.0), ("alpha_1", 1.0)):
        ckpt = read_checkpoint(tmp_path / "out" / "outputs" / "ablation" / row / "checkpoint_last.pt")
        assert ckpt.meta["num_updates"] == 2
        assert float(ckpt.meta["cfg"]["model"]["utterance_loss_weight"]) == alpha
    # a re-run skips every finished step
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and again.stderr.count("is finished, skipping") == 2
    assert again.stderr.count("exists, skipping") == 2


# ------------------------------------------------------------------------------------------------ the docs page
DOCS = Path(__file__).resolve().parents[1] / "docs" / "evaluation-workflows.md"
#: blocks that need what the docs workspace lacks (a hub download, another corpus, the 262 h set and GPUs): their
#: emotion2vec commands are parsed (every flag accepted), the recipe line printed with PRINT=1
NOT_RUN = ("hf:audeering", "manifests/ravdess", "INIT=checkpoints/base_libri.pt")


def _shortened(block: str) -> str:
    """The block with shortened epochs (the page's real counts are for real runs)."""
    import re

    block = re.sub(r"emotion2vec probe ", "emotion2vec probe --epochs 3 ", block)
    block = re.sub(r"(emotion2vec probe .*?)--epochs \d+", r"\1--epochs 3", block, flags=re.S)
    block = re.sub(r"--epochs 5", "--epochs 1", block)
    return block


def test_the_docs_page_runs_as_written(tmp_path, fixtures_dir, urdu_dir):
    """docs/evaluation-workflows.md in a workspace with checkpoints/ (the golden test checkpoints), data/urdu (13
    clips per emotion: every fold of the 10-fold protocol tests at least 5) and manifests/urdu: every python and bash
    block in order, epochs shortened."""
    import os
    import re
    import shlex
    import subprocess
    import sys
    import time

    from emotion2vec.cli import build_parser

    text = DOCS.read_text(encoding="utf-8")
    ws = tmp_path
    (ws / "checkpoints").mkdir()
    (ws / "checkpoints" / "emotion2vec_base.pt").symlink_to(fixtures_dir / "tiny_emotion2vec.pt")
    (ws / "checkpoints" / "emotion2vec_plus_base").symlink_to(fixtures_dir / "funasr_emotion2vec_plus")
    for label in ("Angry", "Happy", "Neutral", "Sad"):
        (ws / "data" / "urdu" / label).mkdir(parents=True)
        for f in sorted((urdu_dir / label).glob("*.wav"))[:13]:
            (ws / "data" / "urdu" / label / f.name).symlink_to(f)
    assert cli(["prepare", "urdu", "--root", str(ws / "data" / "urdu"), "--out", str(ws / "manifests" / "urdu"),
                "--quiet", "--no-audio-audit"]) == 0
    repo = DOCS.parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    (ws / "recipes").symlink_to(repo / "recipes")
    (ws / "benchmarks").symlink_to(repo / "benchmarks")
    blocks = re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 10
    for lang, block in blocks:
        if lang == "python":
            res = subprocess.run([sys.executable, "-c", block], cwd=ws, env=env, capture_output=True, text=True,
                                 timeout=300)
            assert res.returncode == 0, res.stderr[-2000:]
            continue
        if any(marker in block for marker in NOT_RUN):
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                words = shlex.split(line)
                if "emotion2vec" in words:
                    build_parser().parse_args(words[words.index("emotion2vec") + 1:])  # every flag accepted
                elif any(w.endswith("recipes/ablation.sh") for w in words):
                    res = subprocess.run(["bash", "-c", f"PRINT=1 {line} alpha_1"], cwd=ws, env=env,
                                         capture_output=True, text=True, timeout=300)
                    assert res.returncode == 0 and "fairseq-hydra-train" in res.stdout, res.stderr[-2000:]
            continue
        if "recipes/ablation.sh" in block:  # the CPU-sized pipeline (test_ablation_pipeline... runs it in full)
            block = block.replace("recipes/ablation.sh alpha_0 alpha_1", "PRINT=1 recipes/ablation.sh alpha_0 alpha_1")
            block = block.replace("cat results/ablation/urdu/tables.md", "")
        t0 = time.perf_counter()
        res = subprocess.run(["bash", "-e", "-c", _shortened(block)], cwd=ws, env=env, capture_output=True, text=True,
                             timeout=900)
        assert res.returncode == 0, (block, res.stdout[-2000:], res.stderr[-3000:])
        print(f"{time.perf_counter() - t0:.1f}s: {block.splitlines()[0]}")
    # what the page promises
    assert (ws / "results" / "urdu_av" / "fbank" / "results.json").exists()
    assert "**WARNINGS:**" in (ws / "results" / "urdu_av" / "official" / "results.md").read_text()
    ensemble = json.loads((ws / "results" / "urdu" / "ensemble_fold1" / "results.json").read_text())
    assert ensemble["ensemble"]["search"] and (ws / "runs" / "urdu" / "ft_sweep" / "sweep.json").exists()
    assert (ws / "runs" / "urdu" / "ft" / "embedding.png").exists()
    assert json.loads((ws / "results" / "urdu" / "e2v_wagner" / "results.json").read_text())["head"]["type"] == "wagner"
