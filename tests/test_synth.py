"""The embedded demo corpus synthesiser: determinism, files, emotion cues, speaker-independent learnability."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from emotion2vec.demo.synth import (EMOTIONS, SAMPLE_RATE, Speaker, build_corpus, build_unlabelled, make_speakers,
                                    synthesize_utterance, utterance_length, utterance_rng)

FOUR = EMOTIONS[:4]


# ----------------------------------------------------------------------------------------------------------------
# hand-crafted utterance features (numpy only): what a classic SER baseline would compute
# ----------------------------------------------------------------------------------------------------------------


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    return np.lib.stride_tricks.sliding_window_view(x, win)[::hop]


def handcrafted(x: np.ndarray, sr: int = SAMPLE_RATE) -> dict[str, float]:
    """Energy statistics, autocorrelation F0 statistics (semitones re 1 Hz), ZCR and syllable rate."""
    fr = _frames(x.astype(np.float64), 640, 160)  # 40 ms frames, 10 ms hop
    e = 10.0 * np.log10(np.mean(fr ** 2, axis=1) + 1e-10)
    act = e > e.max() - 30.0
    f = (fr - fr.mean(1, keepdims=True)) * np.hanning(640)
    ac = np.fft.irfft(np.abs(np.fft.rfft(f, 1024)) ** 2, 1024)[:, :300]
    ac = ac / (ac[:, :1] + 1e-12)
    lo, hi = sr // 500, sr // 60
    lag = lo + np.argmax(ac[:, lo:hi], axis=1)
    voiced = act & (ac[np.arange(len(ac)), lag] > 0.5)
    st = 12.0 * np.log2(sr / lag[voiced]) if voiced.sum() > 3 else np.zeros(4)
    ea = e[act]
    zcr = np.mean(np.abs(np.diff(np.sign(fr[act]), axis=1)) > 0)
    # syllable nuclei: prominent (>3 dB) local maxima of the smoothed energy envelope, 100 ms either side
    k = np.hanning(7) / np.hanning(7).sum()
    es = np.convolve(e, k, mode="same")
    w = np.lib.stride_tricks.sliding_window_view(np.pad(es, 10, mode="edge"), 21)
    centre = w[:, 10]
    peak = (centre >= w.max(axis=1)) & (centre > e.max() - 25.0)
    prominence = centre - np.maximum(w[:, :10].min(axis=1), w[:, 11:].min(axis=1))
    nuclei = int(np.sum(peak & (prominence > 3.0)))
    span = np.flatnonzero(act)
    dur = (span[-1] - span[0] + 1) * 0.01 if span.size else 1.0
    return {
        "f0_mean": float(np.mean(st)), "f0_median": float(np.median(st)), "f0_std": float(np.std(st)),
        "f0_range": float(np.percentile(st, 90) - np.percentile(st, 10)),
        "voiced_frac": float(voiced.sum() / max(act.sum(), 1)),
        "e_mean": float(ea.mean()), "e_std": float(ea.std()),
        "e_range": float(np.percentile(ea, 95) - np.percentile(ea, 20)),
        "active_frac": float(act.mean()), "zcr": float(zcr), "syllable_rate": nuclei / dur,
        "speech_ratio": float(act.sum() * 0.01 / dur),
    }


def _mel_filterbank(n_mels: int = 40, nfft: int = 512, sr: int = SAMPLE_RATE) -> np.ndarray:
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    pts = hz(np.linspace(mel(20.0), mel(sr / 2), n_mels + 2))
    bins = np.fft.rfftfreq(nfft, 1.0 / sr)
    return np.stack([np.clip(np.minimum((bins - pts[i]) / (pts[i + 1] - pts[i]),
                                        (pts[i + 2] - bins) / (pts[i + 2] - pts[i + 1])), 0.0, None)
                     for i in range(n_mels)])


_FB = _mel_filterbank()


def logmel_mean(x: np.ndarray) -> np.ndarray:
    """Utterance mean of a 40-band log-mel spectrogram (25 ms / 10 ms)."""
    p = np.abs(np.fft.rfft(_frames(x.astype(np.float64), 400, 160) * np.hamming(400), 512)) ** 2
    return np.log(p @ _FB.T + 1e-10).mean(axis=0)


def speaker_normalise(X: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    X = X.copy()
    for s in np.unique(speakers):
        m = speakers == s
        X[m] = (X[m] - X[m].mean(0)) / (X[m].std(0) + 1e-8)
    return X


def speaker_independent_ua(X: np.ndarray, y: np.ndarray, speakers: np.ndarray, folds: list[list[str]]) -> list[float]:
    """Logistic regression trained on the other speakers, unweighted accuracy on each fold's held-out speakers."""
    out = []
    for test_speakers in folds:
        te = np.isin(speakers, test_speakers)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[~te], y[~te])
        out.append(float(balanced_accuracy_score(y[te], clf.predict(X[te]))))
    return out


# ----------------------------------------------------------------------------------------------------------------
# speakers, utterances, determinism
# ----------------------------------------------------------------------------------------------------------------


def test_speakers_deterministic_prefix_stable_and_varied():
    a, b = make_speakers(12, seed=0), make_speakers(12, seed=0)
    assert a == b
    assert make_speakers(5, seed=0) == a[:5]  # speaker i does not depend on how many are made
    assert make_speakers(12, seed=1) != a
    assert [s.id for s in a] == [f"spk{i:02d}" for i in range(12)]
    assert [s.gender for s in a] == ["M", "F"] * 6
    assert all(isinstance(s, Speaker) for s in a)
    f0 = np.array([s.f0 for s in a])
    assert f0.min() >= 90 and f0.max() <= 260 and f0.max() / f0.min() > 1.6
    male = np.array([s.gender == "M" for s in a])
    assert f0[male].mean() < f0[~male].mean()
    assert np.mean([s.formant_scale for s, m in zip(a, male) if m]) < np.mean(
        [s.formant_scale for s, m in zip(a, male) if not m])
    with pytest.raises(ValueError):
        make_speakers(0, seed=0)


def test_synthesize_is_deterministic_in_range_and_seed_dependent():
    spk = make_speakers(2, seed=0)[1]
    for emotion in EMOTIONS:
        x = synthesize_utterance(spk, emotion, np.random.default_rng(7))
        y = synthesize_utterance(spk, emotion, np.random.default_rng(7))
        z = synthesize_utterance(spk, emotion, np.random.default_rng(8))
        assert x.dtype == np.float32 and x.ndim == 1
        assert np.array_equal(x, y)
        assert x.shape != z.shape or not np.array_equal(x, z)
        assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0
        assert 1.5 <= x.size / SAMPLE_RATE <= 4.2
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 1e-3  # not silent
        assert utterance_length(spk, emotion, np.random.default_rng(7)) == x.size
    with pytest.raises(ValueError, match="unknown emotion"):
        synthesize_utterance(spk, "bored", np.random.default_rng(0))


def test_utterance_rng_depends_on_every_part_of_the_key():
    draw = lambda *k: utterance_rng(*k).integers(1 << 62)  # noqa: E731
    base = draw(0, "spk00", "sad", 3)
    assert base == draw(0, "spk00", "sad", 3)
    assert len({base, draw(1, "spk00", "sad", 3), draw(0, "spk01", "sad", 3), draw(0, "spk00", "happy", 3),
                draw(0, "spk00", "sad", 4)}) == 5


def test_durations_and_silences_vary():
    spks = make_speakers(4, seed=3)
    lengths, leads = [], []
    for i in range(24):
        spk, emotion = spks[i % 4], FOUR[i % 4]
        x = synthesize_utterance(spk, emotion, utterance_rng(3, spk.id, emotion, i)).astype(np.float64)
        lengths.append(x.size / SAMPLE_RATE)
        e = 10 * np.log10(np.mean(_frames(x, 320, 160) ** 2, axis=1) + 1e-12)
        leads.append(np.argmax(e > e.max() - 20) * 0.01)
    assert min(lengths) >= 1.5 and max(lengths) <= 4.2 and np.std(lengths) > 0.3
    assert min(leads) > 0.02 and np.std(leads) > 0.03  # random leading silence (only background noise)


# ----------------------------------------------------------------------------------------------------------------
# corpus files
# ----------------------------------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_build_corpus_files_rows_and_idempotence(tmp_path):
    out = tmp_path / "corpus"
    rows = build_corpus(out, seed=5, num_speakers=2, utterances_per_emotion=2)[0]
    assert len(rows) == 2 * 2 * 4
    assert [r["key"] for r in rows[:4]] == ["angry/spk00_angry_000", "angry/spk00_angry_001",
                                            "angry/spk01_angry_000", "angry/spk01_angry_001"]
    speakers = {s.id: s for s in make_speakers(2, seed=5)}
    for r in rows:
        assert set(r) == {"key", "path", "label", "speaker", "gender", "duration"}
        emotion, stem = r["key"].split("/")
        assert emotion == r["label"] and stem == f"{r['speaker']}_{r['label']}_{stem[-3:]}"
        path = Path(r["path"])
        assert path.is_absolute() and path == (out / emotion / f"{stem}.wav").resolve()
        assert r["gender"] == speakers[r["speaker"]].gender
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (SAMPLE_RATE, 1, "PCM_16", "WAV")
        assert abs(info.frames / SAMPLE_RATE - r["duration"]) < 1e-3 and 1.5 <= r["duration"] <= 4.2
    # the file holds the 16-bit quantisation of synthesize_utterance with the utterance's generator
    r = rows[5]
    wav, _ = sf.read(r["path"], dtype="float32")
    ref = synthesize_utterance(speakers[r["speaker"]], r["label"], utterance_rng(5, r["speaker"], r["label"], 1))
    assert wav.shape == ref.shape and np.max(np.abs(wav - ref)) < 1.0 / 32767 + 1e-6
    assert not [p for p in out.rglob("*") if p.is_file() and p.suffix != ".wav"]  # no temporary leftovers

    # re-run: nothing rewritten, same rows
    before = _snapshot(out)
    assert build_corpus(out, seed=5, num_speakers=2, utterances_per_emotion=2)[0] == rows
    assert _snapshot(out) == before
    # a truncated file is rewritten (and only that one)
    victim = Path(rows[3]["path"])
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    rows2, written = build_corpus(out, seed=5, num_speakers=2, utterances_per_emotion=2)
    assert rows2 == rows and written == 1 and victim.read_bytes() == data


def test_subsets_and_workers_give_the_same_audio(tmp_path):
    full = build_corpus(tmp_path / "a", seed=2, num_speakers=3, utterances_per_emotion=3, emotions=FOUR)[0]
    part = build_corpus(tmp_path / "b", seed=2, num_speakers=2, utterances_per_emotion=2, emotions=("sad",),
                        num_workers=2)[0]
    by_key = {r["key"]: r for r in full}
    for r in part:
        assert Path(r["path"]).read_bytes() == Path(by_key[r["key"]]["path"]).read_bytes()
    other = build_corpus(tmp_path / "c", seed=3, num_speakers=1, utterances_per_emotion=1, emotions=("sad",))[0]
    assert Path(other[0]["path"]).read_bytes() != Path(by_key["sad/spk00_sad_000"]["path"]).read_bytes()
    par = build_corpus(tmp_path / "d", seed=2, num_speakers=3, utterances_per_emotion=3, num_workers=2)[0]
    assert [r["duration"] for r in par] == [r["duration"] for r in full]
    assert all(Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes() for a, b in zip(par, full))


def test_build_corpus_rejects_unknown_emotions(tmp_path):
    with pytest.raises(ValueError, match="unknown emotion"):
        build_corpus(tmp_path, emotions=("angry", "bored"), num_speakers=1, utterances_per_emotion=1)[0]


def test_build_unlabelled(tmp_path):
    paths = build_unlabelled(tmp_path / "u", seed=0, num_speakers=3, num_utterances=7)[0]
    assert len(paths) == 7 and all(os.path.isabs(p) and os.path.exists(p) for p in paths)
    names = [Path(p).name for p in paths]
    assert names[:4] == ["ext00_0000.wav", "ext01_0001.wav", "ext02_0002.wav", "ext00_0003.wav"]
    labelled = {s.id for s in make_speakers(12, seed=0)}
    assert not {n.split("_")[0] for n in names} & labelled
    again = build_unlabelled(tmp_path / "v", seed=0, num_speakers=3, num_utterances=4)[0]
    assert [Path(p).read_bytes() for p in again] == [Path(p).read_bytes() for p in paths[:4]]


def test_cli_writes_and_reports(tmp_path, capsys):
    from emotion2vec.cli import main

    out = tmp_path / "demo"
    assert main(["synth", str(out), "--seed", "1", "--speakers", "2", "--per-emotion", "1", "--emotions",
                       "angry,sad", "--unlabelled", "2"]) == 0
    text = capsys.readouterr().out
    assert "4 utterances (4 written, 0 already there)" in text and "unlabelled: 2 utterances (2 written)" in text
    assert sorted(p.name for p in (out / "sad").iterdir()) == ["spk00_sad_000.wav", "spk01_sad_000.wav"]
    assert main(["synth", str(out), "--seed", "1", "--speakers", "2", "--per-emotion", "1", "--emotions",
                 "angry,sad"]) == 0
    assert "(0 written, 4 already there)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:  # checked where the option is parsed
        main(["synth", str(out), "--emotions", "bored"])
    assert refused.value.code == 2 and "unknown emotion bored" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# emotion cues and speaker-independent learnability
# ----------------------------------------------------------------------------------------------------------------

NUM_SPEAKERS, PER_EMOTION, SEED = 12, 4, 0


@pytest.fixture(scope="module", autouse=True)
def _single_threaded_blas():
    # tiny matrices: BLAS threads only add overhead (seconds on a busy machine); sklearn is imported above so
    # that its BLAS is loaded, and limited, too
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def features(_single_threaded_blas):
    speakers = make_speakers(NUM_SPEAKERS, SEED)
    rows = []
    for spk in speakers:
        for label, emotion in enumerate(FOUR):
            for i in range(PER_EMOTION):
                x = synthesize_utterance(spk, emotion, utterance_rng(SEED, spk.id, emotion, i))
                rows.append((spk, label, handcrafted(x), logmel_mean(x)))
    names = list(rows[0][2])
    return {
        "names": names,
        "X": np.array([[r[2][n] for n in names] for r in rows]),
        "M": np.array([r[3] for r in rows]),
        "y": np.array([r[1] for r in rows]),
        "speaker": np.array([r[0].id for r in rows]),
        "base_st": np.array([12.0 * np.log2(r[0].f0) for r in rows]),
        "folds": [[s.id for s in speakers[k::3]] for k in range(3)],  # 3 folds of 4 held-out speakers (2 M + 2 F)
    }


def _class_means(feats, name: str, relative_to_speaker: bool = False) -> dict[str, float]:
    v = feats["X"][:, feats["names"].index(name)]
    if relative_to_speaker:
        v = v - feats["base_st"]
    return {e: float(np.mean(v[feats["y"] == k])) for k, e in enumerate(FOUR)}


def test_emotion_cues_relative_to_the_speaker(features):
    f0 = _class_means(features, "f0_median", relative_to_speaker=True)  # semitones re the speaker's baseline F0
    assert f0["angry"] > f0["sad"] + 2.0 and f0["happy"] > f0["sad"] + 2.0
    assert f0["happy"] > f0["neutral"] + 1.0 and f0["neutral"] > f0["sad"]
    rate = _class_means(features, "syllable_rate")
    assert rate["angry"] > 1.25 * rate["sad"] and rate["happy"] > 1.25 * rate["sad"]
    assert rate["neutral"] > rate["sad"]
    energy = _class_means(features, "e_mean")  # dB, despite the random recording gain
    assert energy["angry"] > energy["sad"] + 3.0 and energy["angry"] > energy["neutral"]
    rng_ = _class_means(features, "f0_range")
    assert rng_["happy"] > rng_["sad"] + 1.0 and rng_["angry"] > rng_["sad"] + 1.0


def test_no_single_global_threshold_solves_it(features):
    # speakers' baselines overlap the emotion effects: raw mean F0 alone is a weak cue across speakers
    i = features["names"].index("f0_mean")
    ua = speaker_independent_ua(features["X"][:, [i]], features["y"], features["speaker"], features["folds"])
    assert np.mean(ua) < 0.5


def test_speaker_independent_learnability(features, record_property):
    X, y, spk, folds = features["X"], features["y"], features["speaker"], features["folds"]
    raw = speaker_independent_ua(X, y, spk, folds)
    norm = speaker_independent_ua(speaker_normalise(X, spk), y, spk, folds)
    mel = speaker_independent_ua(features["M"], y, spk, folds)
    mel_norm = speaker_independent_ua(speaker_normalise(features["M"], spk), y, spk, folds)
    report = {"handcrafted": np.mean(raw), "handcrafted_speaker_norm": np.mean(norm), "logmel_mean": np.mean(mel),
              "logmel_mean_speaker_norm": np.mean(mel_norm)}
    for k, v in report.items():
        record_property(k, round(float(v), 3))
    print("speaker-independent UA (4 classes, chance 0.25):", {k: round(float(v), 3) for k, v in report.items()})
    assert np.mean(norm) > 0.45  # clearly learnable from prosody on unseen speakers ...
    assert np.mean(raw) > 0.40
    assert np.mean(mel) < 0.9  # ... but utterance-mean spectra do not trivially solve it
