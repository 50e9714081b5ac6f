"""Fold protocols: invariants, determinism, row-order independence, and the checks that refuse bad folds."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from emotion2vec.downstream.folds import (PARTITION_PROTOCOLS, FoldsError, check_folds, infer_protocol, load_folds,
                                          make_folds, save_folds)
from emotion2vec.io.manifests import read_data_tsv, write_data_tsv

LABELS = ["angry", "happy", "neutral", "sad"]


def make_rows(n_speakers=12, per_speaker=20, sessions=None, split=False, seed=0):
    """Synthetic data.tsv rows: uneven label mix, speakers of different sizes, optional session/split columns."""
    rng = random.Random(seed)
    rows = []
    for s in range(n_speakers):
        spk = f"spk{s:02d}"
        for u in range(per_speaker + (s % 3) * 4):
            row = {"key": f"{spk}/utt{u:03d}", "path": f"/x/{spk}/{u}.wav", "label": LABELS[(u * 7 + s) % 5 % 4],
                   "speaker": spk, "gender": "MF"[s % 2], "duration": 1.0 + rng.random()}
            if sessions:
                row["session"] = f"Ses0{s % sessions + 1}"
            if split:
                row["split"] = ("train", "train", "train", "valid", "test")[s % 5]
            rows.append(row)
    return rows


def keyset(fold, part):
    return set(fold[part])


def assert_invariants(folds, rows, partition=True):
    keys = {r["key"] for r in rows}
    spk = {r["key"]: r["speaker"] for r in rows}
    tested = Counter()
    for f in folds["folds"]:
        tr, va, te = keyset(f, "train"), keyset(f, "valid"), keyset(f, "test")
        assert not (tr & va) and not (tr & te) and not (va & te), f["name"]
        assert (tr | va | te) <= keys
        assert tr and te
        if partition:
            assert tr | va | te == keys
        if folds["speaker_independent"]:
            s_tr, s_va, s_te = ({spk[k] for k in x} for x in (tr, va, te))
            assert not (s_tr & s_va) and not (s_tr & s_te) and not (s_va & s_te), f["name"]
        tested.update(te)
        assert f["train"] == sorted(f["train"]) and f["test"] == sorted(f["test"])
    if partition:
        assert set(tested) == keys and set(tested.values()) == {1}
    assert folds["labels"] == sorted({r["label"] for r in rows})


CASES = [
    ("random-kfold", {}, {}),
    ("random-kfold", {"folds": 5}, {}),
    ("random-kfold", {"stratify": False}, {}),
    ("speaker-kfold", {}, {}),
    ("speaker-kfold", {"folds": 4}, {}),
    ("loso-speaker", {}, {}),
    ("loso-session", {}, {"sessions": 5}),
    ("session-rotation", {}, {"sessions": 5}),
    ("holdout", {}, {}),
    ("holdout", {"stratify": False, "test_fraction": 0.3}, {}),
    ("speaker-holdout", {}, {}),
    ("original", {}, {"split": True}),
]


@pytest.mark.parametrize("protocol,options,rowkw", CASES)
def test_protocol_invariants_and_determinism(protocol, options, rowkw):
    rows = make_rows(**rowkw)
    folds = make_folds(rows, protocol, seed=3, corpus="synthetic", **options)
    assert folds["protocol"] == protocol and folds["seed"] == 3 and folds["corpus"] == "synthetic"
    assert_invariants(folds, rows, partition=protocol in PARTITION_PROTOCOLS)
    check_folds(folds, rows)
    # same seed -> identical, whatever the row order
    shuffled = rows[:]
    random.Random(99).shuffle(shuffled)
    assert make_folds(shuffled, protocol, seed=3, corpus="synthetic", **options) == folds
    assert make_folds(rows, protocol, seed=3, corpus="synthetic", **options) == folds
    # another seed -> different folds (except the fully deterministic official split with an official valid)
    other = make_folds(rows, protocol, seed=4, corpus="synthetic", **options)
    if protocol not in ("original", "session-rotation"):
        assert other["folds"] != folds["folds"]
    # JSON round trip keeps it valid
    check_folds(json.loads(json.dumps(folds)), rows)


def test_random_kfold_is_80_10_10_and_stratified():
    rows = make_rows(n_speakers=10, per_speaker=30)
    n = len(rows)
    folds = make_folds(rows, "random-kfold", seed=0)
    assert len(folds["folds"]) == 10 and folds["speaker_independent"] is False
    label_of = {r["key"]: r["label"] for r in rows}
    total = Counter(label_of.values())
    for i, f in enumerate(folds["folds"]):
        assert f["name"] == f"fold{i + 1}"
        assert abs(len(f["test"]) - n / 10) <= 1 and abs(len(f["valid"]) - n / 10) <= 1
        assert abs(len(f["train"]) - 0.8 * n) <= 2
        per = Counter(label_of[k] for k in f["test"])
        for lab, c in total.items():
            assert abs(per[lab] - c / 10) <= 1, (lab, per[lab], c)
        # valid of fold i is the test of fold i+1
        assert f["valid"] == folds["folds"][(i + 1) % 10]["test"]


def test_random_kfold_5_folds_is_60_20_20():
    rows = make_rows(n_speakers=10, per_speaker=10)
    folds = make_folds(rows, "random-kfold", seed=0, folds=5)
    n = len(rows)
    for f in folds["folds"]:
        assert abs(len(f["test"]) - n / 5) <= 1 and abs(len(f["valid"]) - n / 5) <= 1
        assert abs(len(f["train"]) - 0.6 * n) <= 2
    assert folds["options"]["folds"] == 5


def test_speaker_protocols_are_speaker_disjoint_and_balanced():
    rows = make_rows(n_speakers=13)
    folds = make_folds(rows, "speaker-kfold", seed=1)
    assert folds["speaker_independent"] is True and len(folds["folds"]) == 5
    spk = {r["key"]: r["speaker"] for r in rows}
    groups = [{spk[k] for k in f["test"]} for f in folds["folds"]]
    assert all(groups) and sum(len(g) for g in groups) == 13
    sizes = [len(f["test"]) for f in folds["folds"]]
    assert max(sizes) - min(sizes) <= 28  # greedy balance: within the largest speaker's size
    loso = make_folds(rows, "loso-speaker", seed=1)
    assert len(loso["folds"]) == 13
    for f in loso["folds"]:
        assert len({spk[k] for k in f["test"]}) == 1 and len({spk[k] for k in f["valid"]}) == 1
        assert {spk[k] for k in f["test"]} != {spk[k] for k in f["valid"]}


def test_loso_session_tests_one_session_and_validates_on_20_percent():
    rows = make_rows(n_speakers=10, sessions=5)
    folds = make_folds(rows, "loso-session", seed=0)
    sess = {r["key"]: r["session"] for r in rows}
    assert len(folds["folds"]) == 5 and folds["speaker_independent"] is False
    for i, f in enumerate(folds["folds"]):
        assert {sess[k] for k in f["test"]} == {f"Ses0{i + 1}"}
        rest = len(f["train"]) + len(f["valid"])
        assert abs(len(f["valid"]) - 0.2 * rest) <= 1
        assert f"Ses0{i + 1}" not in {sess[k] for k in f["train"] + f["valid"]}


def test_session_rotation_is_emo_superbs_partition():
    rows = make_rows(n_speakers=10, sessions=5)
    folds = make_folds(rows, "session-rotation", seed=0)
    sess = {r["key"]: r["session"] for r in rows}
    assert folds["speaker_independent"] is True and len(folds["folds"]) == 5
    expected = [((1, 2, 3), 4, 5), ((2, 3, 4), 5, 1), ((3, 4, 5), 1, 2), ((4, 5, 1), 2, 3), ((5, 1, 2), 3, 4)]
    for f, (train, dev, test) in zip(folds["folds"], expected):
        assert {sess[k] for k in f["train"]} == {f"Ses0{i}" for i in train}
        assert {sess[k] for k in f["valid"]} == {f"Ses0{dev}"} and {sess[k] for k in f["test"]} == {f"Ses0{test}"}
    assert make_folds(rows, "session-rotation", seed=9) == {**folds, "seed": 9}
    # a speaker recorded in two sessions breaks the promise: refused, naming the speaker
    rows[0]["session"] = "Ses02"
    with pytest.raises(FoldsError, match="not speaker-independent: speaker 'spk00'"):
        make_folds(rows, "session-rotation")
    with pytest.raises(FoldsError, match="needs a 'session' column"):
        make_folds(make_rows(), "session-rotation")


def test_holdout_is_80_20_with_10_percent_dev_and_its_speaker_variant():
    rows = make_rows(n_speakers=12, per_speaker=25)
    n = len(rows)
    label_of = {r["key"]: r["label"] for r in rows}
    folds = make_folds(rows, "holdout", seed=1)
    (f,) = folds["folds"]
    assert f["name"] == "holdout" and folds["speaker_independent"] is False
    assert abs(len(f["test"]) - 0.2 * n) <= 2 and abs(len(f["valid"]) - 0.1 * (n - len(f["test"]))) <= 2
    total, test = Counter(label_of.values()), Counter(label_of[k] for k in f["test"])
    assert all(abs(test[lab] - 0.2 * c) <= 1 for lab, c in total.items())
    spk = make_folds(rows, "speaker-holdout", seed=1, test_fraction=0.25)
    (g,) = spk["folds"]
    assert spk["speaker_independent"] is True and spk["options"]["test_fraction"] == 0.25
    speaker = {r["key"]: r["speaker"] for r in rows}
    groups = [{speaker[k] for k in g[part]} for part in ("train", "valid", "test")]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert abs(len(g["test"]) - 0.25 * n) <= 28  # within one speaker of the target
    with pytest.raises(FoldsError, match="needs >= 3 speakers"):
        make_folds(make_rows(n_speakers=2), "speaker-holdout")
    with pytest.raises(FoldsError, match="test_fraction must be in"):
        make_folds(rows, "holdout", test_fraction=1.5)


def test_original_uses_split_and_carves_valid_when_missing():
    rows = make_rows(split=True)
    folds = make_folds(rows, "original")
    split = {r["key"]: r["split"] for r in rows}
    f = folds["folds"][0]
    for part in ("train", "valid", "test"):
        assert {split[k] for k in f[part]} == {part}
    assert folds["speaker_independent"] is True  # the synthetic split is by speaker
    # no official valid (RESD): 10% of train, stratified, seeded
    for r in rows:
        if r["split"] == "valid":
            r["split"] = "train"
    folds = make_folds(rows, "original", seed=5)
    f = folds["folds"][0]
    n_train = sum(1 for r in rows if r["split"] == "train")
    assert abs(len(f["valid"]) - 0.1 * n_train) <= 2
    assert {split[k] for k in f["test"]} == {"test"}
    assert folds["options"]["valid_from_train"] is True
    assert folds["speaker_independent"] is False  # valid shares speakers with train
    assert make_folds(rows, "original", seed=6) != folds


def test_emobox_protocol_from_fold_columns():
    rows = make_rows(n_speakers=8)
    spk_fold = {f"spk{s:02d}": s % 2 for s in range(8)}
    for r in rows:
        r["fold1"] = "test" if spk_fold[r["speaker"]] == 0 else "train"
        r["fold2"] = "train" if spk_fold[r["speaker"]] == 0 else "test"
    folds = make_folds(rows, "emobox", seed=0)
    assert [f["name"] for f in folds["folds"]] == ["fold1", "fold2"]
    for f in folds["folds"]:
        assert f["valid"] and abs(len(f["valid"]) - 0.2 * (len(f["train"]) + len(f["valid"]))) <= 2
    assert folds["speaker_independent"] is False
    check_folds(folds, rows)


@pytest.mark.parametrize("protocol,kwargs,message", [
    ("nope", {}, "unknown protocol"),
    ("random-kfold", {"folds": 2}, "folds must be >= 3"),
    ("random-kfold", {"bogus": 1}, "takes no option"),
    ("speaker-kfold", {"folds": 40}, "only 12 speakers"),
    ("loso-session", {}, "needs a 'session' column"),
    ("original", {}, "needs a 'split' column"),
    ("emobox", {}, "fold1, fold2"),
])
def test_make_folds_refuses_impossible_requests(protocol, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_folds(make_rows(), protocol, **kwargs)


def test_speaker_protocols_need_speakers():
    rows = make_rows(n_speakers=2)
    with pytest.raises(FoldsError, match="needs >= 3 speakers"):
        make_folds(rows, "loso-speaker")
    rows = make_rows()
    rows[5]["speaker"] = ""
    with pytest.raises(FoldsError, match="needs a speaker for every row.*spk00/utt005"):
        make_folds(rows, "speaker-kfold")


def test_check_folds_names_fold_and_keys():
    rows = make_rows()
    good = make_folds(rows, "speaker-kfold")

    def broken(mutate):
        f = json.loads(json.dumps(good))
        mutate(f)
        return f

    k = good["folds"][1]["test"][0]
    with pytest.raises(ValueError, match=f"fold fold2: 1 key\\(s\\) in both train and test: '{k}'"):
        check_folds(broken(lambda f: f["folds"][1]["train"].append(k)), rows)
    with pytest.raises(ValueError, match="fold fold1: 1 test key\\(s\\) not in data.tsv: 'ghost'"):
        check_folds(broken(lambda f: f["folds"][0]["test"].append("ghost")), rows)
    with pytest.raises(ValueError, match="fold fold1: .* in none of train/valid/test"):
        check_folds(broken(lambda f: f["folds"][0]["train"].pop()), rows)

    def test_twice(f):  # fold2's first test key also tested in fold1 (and removed from fold1's other parts)
        key = good["folds"][1]["test"][0]
        for part in ("train", "valid"):
            if key in f["folds"][0][part]:
                f["folds"][0][part].remove(key)
        f["folds"][0]["test"].append(key)
        f["speaker_independent"] = False

    with pytest.raises(ValueError, match="1 key\\(s\\) are in more than one test set"):
        check_folds(broken(test_twice), rows)

    # speaker leakage: move one of fold1's test utterances of a test speaker into train
    def leak(f):
        key = f["folds"][0]["test"].pop(0)
        f["folds"][0]["train"].append(key)
        f["folds"][0]["train"].sort()

    spk = {r["key"]: r["speaker"] for r in rows}[good["folds"][0]["test"][0]]
    with pytest.raises(ValueError, match=f"fold fold1: not speaker-independent: speaker '{spk}' is in train"):
        check_folds(broken(leak), rows)
    with pytest.raises(ValueError, match="labels \\['sad'\\] occur in data.tsv"):
        check_folds(broken(lambda f: f["labels"].remove("sad")), rows)


def test_infer_protocol():
    assert infer_protocol(make_rows(split=True)) == "original"
    assert infer_protocol(make_rows(sessions=5)) == "loso-session"
    assert infer_protocol(make_rows()) == "speaker-kfold"
    assert infer_protocol(make_rows(n_speakers=3)) == "random-kfold"


def test_save_and_load_folds(tmp_path):
    rows = make_rows()
    write_data_tsv(tmp_path / "data.tsv", rows)
    rows = read_data_tsv(tmp_path / "data.tsv")
    # nothing saved yet: inferred protocol, computed on the fly with the seed
    assert load_folds(tmp_path)["protocol"] == "speaker-kfold"
    assert load_folds(tmp_path, "random-kfold", seed=2) == make_folds(rows, "random-kfold", seed=2,
                                                                      corpus=tmp_path.name)
    folds = make_folds(rows, "random-kfold", seed=7, corpus="synthetic", folds=5)
    save_folds(folds, tmp_path / "folds.json")
    assert load_folds(tmp_path) == folds
    assert load_folds(tmp_path, "random-kfold") == folds  # folds.json is of that protocol
    save_folds(folds, tmp_path / "folds_random-kfold.json")
    assert load_folds(tmp_path, "random-kfold", seed=8) == folds  # a stored file is returned as written
    # missing file: computed, named after folds.json's corpus
    other = load_folds(tmp_path, "loso-speaker", seed=8)
    assert other == make_folds(rows, "loso-speaker", seed=8, corpus="synthetic")
    assert not (tmp_path / "folds_loso-speaker.json").exists()
    # a stale file is refused with the file named
    write_data_tsv(tmp_path / "data.tsv", rows[:-3])
    with pytest.raises(ValueError, match="folds.json: does not match .*data.tsv"):
        load_folds(tmp_path)
    with pytest.raises(ValueError, match="folds_random-kfold.json: does not match"):
        load_folds(tmp_path, "random-kfold")
    with pytest.raises(ValueError, match="unknown protocol"):
        load_folds(tmp_path, "bogus")


def test_load_folds_uses_the_corpus_default_options(tmp_path):
    rows = make_rows()
    write_data_tsv(tmp_path / "data.tsv", rows)
    rows = read_data_tsv(tmp_path / "data.tsv")
    save_folds(make_folds(rows, "loso-speaker", corpus="ravdess-song"), tmp_path / "folds.json")
    assert len(load_folds(tmp_path, "random-kfold")["folds"]) == 5  # RAVDESS-song: 5-fold CV
