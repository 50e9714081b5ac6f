"""The leakage audit: a planted shared speaker and a planted duplicate file are found, severities follow the
protocol, the decoded-audio hashes are cached, and probe / `emotion2vec audit` report it (prepare: test_prepare)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emotion2vec.cli import main as cli
from emotion2vec.downstream import audit as A
from emotion2vec.downstream import ProbeError
from emotion2vec.downstream.folds import save_folds
from emotion2vec.downstream.probe import run_probe
from emotion2vec.downstream.training import ProbeConfig
from emotion2vec.io.manifests import read_data_tsv, write_data_tsv

from test_probe import synthetic_corpus


def _corpus(tmp_path: Path) -> tuple[Path, list[dict]]:
    """Six speakers x four utterances of distinct noise; the last test utterance ``dup`` holds the same samples as
    a training file, stored as FLAC under another name; a ``text`` column with one sentence said twice."""
    rng = np.random.default_rng(0)
    rows = []
    for s in range(6):
        for u in range(4):
            key = f"s{s}/u{u}"
            path = tmp_path / "audio" / f"{key}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, rng.uniform(-0.3, 0.3, 1600).astype(np.float32), 16000, subtype="PCM_16")
            rows.append({"key": key, "path": str(path), "label": ("angry", "sad")[u % 2], "speaker": f"spk{s}",
                         "gender": "", "duration": 0.1, "text": f"sentence {s} {u}"})
    samples, rate = sf.read(rows[0]["path"], dtype="int16")
    dup = tmp_path / "audio" / "copies" / "dup.flac"
    dup.parent.mkdir(parents=True)
    sf.write(dup, samples, rate, format="FLAC")
    rows.append({"key": "copies/dup", "path": str(dup), "label": "angry", "speaker": "spk5", "gender": "",
                 "duration": 0.1, "text": "Sentence 0, 0!"})  # the same text as s0/u0, spelt differently
    data = tmp_path / "data"
    write_data_tsv(data / "data.tsv", rows)
    return data, read_data_tsv(data)


def _folds(rows, protocol: str, independent: bool, leak: bool) -> dict:
    """train = speakers 0-3, valid = speaker 4, test = speaker 5 (+ dup); ``leak`` moves one utterance of a
    training speaker into the test set."""
    by = {s: [r["key"] for r in rows if r["speaker"] == f"spk{s}"] for s in range(6)}
    train = by[0] + by[1] + by[2] + by[3]
    test = list(by[5])
    if leak:
        train.remove("s2/u3")
        test.append("s2/u3")
    return {"corpus": "t", "protocol": protocol, "seed": 0, "speaker_independent": independent,
            "labels": ["angry", "sad"], "folds": [{"name": "fold1", "train": sorted(train), "valid": sorted(by[4]),
                                                   "test": sorted(test)}]}


def test_planted_speaker_and_duplicate_are_found(tmp_path):
    data, rows = _corpus(tmp_path)
    hashes, unreadable = A.audio_hashes(rows, data / A.HASH_CACHE)
    assert not unreadable and hashes["copies/dup"] == hashes["s0/u0"] and len(set(hashes.values())) == 24
    report = A.audit_folds(rows, _folds(rows, "emobox", False, leak=True), hashes)
    (fold,) = report["folds"]
    assert fold["sizes"] == {"train": 15, "valid": 4, "test": 6}
    assert fold["labels"]["test"] == {"angry": 3, "sad": 3} and fold["speakers"] == {"train": 4, "valid": 1, "test": 2}
    spk = fold["pairs"]["train-test"]["speakers"]
    assert (spk["shared"], spk["of"], spk["utterances"], spk["share_pct"]) == (1, 2, 1, pytest.approx(16.67))
    assert spk["examples"] == ["spk2"]
    assert fold["pairs"]["train-test"]["identical_audio"]["examples"] == [["s0/u0", "copies/dup"]]
    assert fold["pairs"]["train-test"]["same_text"] == {"utterances": 1, "share_pct": pytest.approx(16.67),
                                                        "examples": ["copies/dup"]}
    assert report["kind"] == "imported" and report["audio_duplicate_groups"] == 1
    assert any("1 of the 2 test speakers also speak in train+valid (1 of 6 test utterances, 16.67 %; e.g. spk2)"
               in w and "NOT speaker-independent" in w for w in report["warnings"])
    assert any("1 test utterance(s) (16.67 %) have audio identical to train utterances (e.g. s0/u0 = copies/dup)"
               in w for w in report["warnings"])
    assert any("say a sentence that also occurs in train" in n for n in report["notes"])
    text = A.format_audit(report)
    assert "WARNING:" in text and "test speakers seen in train+valid 1/2 (16.67 % of test utterances)" in text

    # the same split under a protocol that promises speaker independence: an error with the figures
    with pytest.raises(A.AuditError, match=r"(?s)promises speaker independence.*1 of the 2 test speakers also "
                                           r"speak in train"):
        A.audit_folds(rows, _folds(rows, "speaker-kfold", True, leak=True), hashes)
    clean = A.audit_folds(rows, _folds(rows, "speaker-kfold", True, leak=False), hashes)
    assert clean["kind"] == "promised" and not clean["errors"]
    assert clean["warnings"] == [w for w in clean["warnings"] if "identical to train" in w]  # only the copy
    # a speaker-dependent protocol: one summary note, no warning about speakers
    dep = A.audit_folds(rows, _folds(rows, "random-kfold", False, leak=True), None)
    assert not dep["warnings"] and any(n.startswith("speaker-dependent protocol") for n in dep["notes"])
    assert "identical_audio" not in dep["folds"][0]["pairs"]["train-test"] and not dep["audio_compared"]


def test_hashes_are_cached_and_changed_files_decoded_again(tmp_path, monkeypatch):
    data, rows = _corpus(tmp_path)
    calls = []
    real = A._decode_hash
    monkeypatch.setattr(A, "_decode_hash", lambda path, channel: calls.append(path) or real(path, channel))
    first, _ = A.audio_hashes(rows, data / A.HASH_CACHE)
    assert len(calls) == 25 and (data / A.HASH_CACHE).is_file()
    calls.clear()
    assert A.audio_hashes(rows, data / A.HASH_CACHE)[0] == first and calls == []  # a second audit decodes nothing
    sf.write(rows[3]["path"], np.zeros(1600, dtype=np.float32), 16000)  # one file changes
    again, _ = A.audio_hashes(rows, data / A.HASH_CACHE)
    assert calls == [rows[3]["path"]] and again[rows[3]["key"]] != first[rows[3]["key"]]
    missing = [{**rows[0], "key": "gone", "path": str(tmp_path / "nope.wav")}]
    assert A.audio_hashes(missing) == ({}, ["gone"])


def test_cli_audit(tmp_path, capsys):
    data, rows = _corpus(tmp_path)
    save_folds(_folds(rows, "emobox", False, leak=True), data / "folds.json")
    out = tmp_path / "audit.json"
    assert cli(["audit", str(data), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "leakage audit (emobox, imported; audio compared, text compared)" in printed
    assert "WARNING: fold1: 1 of the 2 test speakers also speak in train+valid" in printed
    saved = json.loads(out.read_text())
    assert saved["emobox"]["folds"][0]["pairs"]["train-test"]["identical_audio"]["utterances"] == 1
    assert cli(["audit", str(data), "--protocol", "speaker-kfold", "--no-audio"]) == 0  # computed on the fly
    assert "leakage audit (speaker-kfold, promised; audio not compared" in capsys.readouterr().out
    # folds that claim speaker independence but share a speaker: exit 2, naming the speaker
    save_folds(_folds(rows, "speaker-kfold", True, leak=True), data / "folds.json")
    assert cli(["audit", str(data)]) == 2
    assert "not speaker-independent: speaker 'spk2'" in capsys.readouterr().err
    (data / "folds.json").unlink()
    assert cli(["audit", str(data)]) == 2 and "no folds.json" in capsys.readouterr().err


def test_probe_reports_the_audit_and_refuses_a_broken_promise(tmp_path):
    fdir, ddir, feats, labels_of, folds = synthetic_corpus(tmp_path, "utterance", n=40, n_folds=2)
    spec = json.loads((ddir / "folds.json").read_text())
    (ddir / "folds.json").write_text(json.dumps({**spec, "protocol": "emobox"}))
    out = tmp_path / "out"
    r = run_probe(fdir, ddir, out, ProbeConfig(epochs=2, bootstrap=0), verbose=False)
    assert r["audit"]["kind"] == "imported" and r["audit"]["audio_unreadable"] == 40
    assert any("NOT speaker-independent" in w for w in r["warnings"])
    md = (out / "results.md").read_text()
    assert md.index("**WARNINGS:**") < md.index("| Fold |") and "## Leakage audit" in md
    assert "| fold1 | " in md.split("## Leakage audit")[1] and "5 / 5 |" in md.split("## Leakage audit")[1]
    (ddir / "folds.json").write_text(json.dumps({**spec, "speaker_independent": True}))
    with pytest.raises(ProbeError, match="folds.json: does not match .* not speaker-independent: speaker"):
        run_probe(fdir, ddir, None, ProbeConfig(epochs=1), verbose=False)



def test_a_valid_split_missing_classes_is_a_warning_and_the_probe_prints_one_audit_line(tmp_path, capsys):
    """A dev set with one class (URDU's speaker-holdout builds such a fold): a WARNING at the top of results.md and in
    results.json; the probe prints the audit's summary line, the per-fold table stays in results.md."""
    fdir, ddir, feats, labels_of, folds = synthetic_corpus(tmp_path, "utterance", n=40, n_folds=2)
    spec = json.loads((ddir / "folds.json").read_text())
    for fold in spec["folds"]:  # valid: only the first label; the others go to train
        first = labels_of[fold["valid"][0]]
        fold["train"] += [k for k in fold["valid"] if labels_of[k] != first]
        fold["valid"] = [k for k in fold["valid"] if labels_of[k] == first]
    (ddir / "folds.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert cli(["probe", "--features", str(fdir), "--data", str(ddir), "--out", str(out), "--epochs", "2",
                "--bootstrap", "0", "--no-audio-audit"]) == 0
    printed = capsys.readouterr().out
    trained = sorted(set(labels_of.values()))
    missing = [label for label in trained if label != first]
    warning = (f"fold1: valid holds 1 of the {len(trained)} training labels; none of {', '.join(missing)}: the "
               f"epoch and the head are chosen on the classes it has")
    result = json.loads((out / "results.json").read_text())
    assert f"leakage audit: {warning}" in result["warnings"]
    md = (out / "results.md").read_text()
    assert md.index(warning) < md.index("| Fold |")  # at the top
    assert "Utterances per label, train / valid / test:" in md and "| fold1 | " in md.split("Utterances per label")[1]
    audit_lines = [line for line in printed.splitlines() if "leakage audit (" in line]
    assert len(audit_lines) == 1 and audit_lines[0].startswith("leakage audit (") and "2 fold(s)" in audit_lines[0]
    assert f"WARNING: {warning}" in printed and f"(per-fold table: {out / 'results.md'})" in printed
    assert "    labels: train" not in printed and "  fold1: train" not in printed  # the table is not reprinted
