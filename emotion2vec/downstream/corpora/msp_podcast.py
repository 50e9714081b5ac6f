"""MSP-Podcast: consensus and raters' labels, dimensions, the official split and transcripts."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from ...io.manifests import format_votes
from .base import (log, CorpusError, canonical_label, _layout, corpus_spec, _Problems, _check_root, _find, _entry,
                   _finish, _one_line, _read_csv, _scaled, _GENDER_WORDS)


_MSP_CODES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust",
              "C": "contempt", "N": "neutral", "O": "other", "X": "unknown"}
_MSP_SPLITS = {"train": "train", "development": "valid", "validation": "valid"}


def _msp_category(raw: str) -> str | None:
    """A rater's or the consensus category (letter code or English name) -> label; None when unknown."""
    raw = raw.strip()
    if raw.upper() in _MSP_CODES and len(raw) == 1:
        return _MSP_CODES[raw.upper()]
    low = raw.lower()
    if low.startswith("other"):
        return "other"
    label = canonical_label(low)
    return label if label in _MSP_CODES.values() else None


def _msp_votes(path: Path, corpus: str, problems: "_Problems") -> dict[str, dict[str, int]]:
    """Per file, the raters' primary categories from labels_detailed.csv: one row per rater with
    ``EmoClass_Major`` (or ``EmoClass``), or an ``EmoDetail`` cell 'WORKER; Primary; secondary,...; A:..; ...'."""
    rows = _read_csv(path, ("FileName",), corpus)
    votes: dict[str, dict[str, int]] = defaultdict(dict)
    for i, row in enumerate(rows, start=2):
        if "EmoDetail" in row:
            fields = [f.strip() for f in str(row["EmoDetail"]).split(";")]
            raw = fields[1] if len(fields) > 1 else ""
        else:
            raw = row.get("EmoClass_Major") or row.get("EmoClass") or ""
        label = _msp_category(raw)
        if label is None:
            problems.add(f"{path}:{i}", f"unknown category {raw!r}")
            continue
        name = Path(row["FileName"]).stem
        votes[name][label] = votes[name].get(label, 0) + 1
    return votes


@corpus_spec('msp-podcast', "original", "MSP-Podcast, 8 classes + arousal/valence/dominance, official split",
             layout=('Labels/labels_consensus.csv (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, '
                     'Split_Set in Train/Development/Test1/Test2), optional Labels/labels_detailed.csv (one row per '
                     'rater: FileName + EmoClass_Major, or an EmoDetail cell), Audios/<FileName> and optional '
                     'Transcripts/<FileName stem>.txt'),
             options=("all_labels", "test_set"))
def prepare_msp_podcast(root, all_labels: bool = False, test_set: str | None = None) -> list[dict]:
    """MSP-Podcast: 8 consensus classes (A, S, H, U, F, D, C, N; ``all_labels`` keeps O = other and X = no
    agreement as ``unknown``), split Train / Development / ``test_set`` (default Test1) -> train / valid / test,
    segments of the other test sets left out (logged); ``arousal``, ``valence``, ``dominance`` = EmoAct, EmoVal,
    EmoDom (1-7) scaled to [0, 1] by (x - 1) / 6; speaker = SpkrID (empty when Unknown); ``votes`` = the raters'
    primary categories from labels_detailed.csv when present; ``text`` = ``Transcripts/<stem>.txt`` when that
    folder exists (empty for a segment without one)."""
    corpus = "msp-podcast"
    root = _check_root(corpus, root)
    test_set = (test_set or "Test1").strip()
    found = _find(root, ["labels_consensus.csv"], want_dir=False, depth=2)
    if not found:
        raise CorpusError(f"{corpus}: Labels/labels_consensus.csv not found under {root}. Expected layout: "
                          f"{_layout(corpus)}")
    labels_csv = found[0]
    base = labels_csv.parent.parent if labels_csv.parent.name.lower() == "labels" else labels_csv.parent
    audio_dirs = _find(base, ["Audios", "Audio"], want_dir=True, depth=1)
    audio_dir = audio_dirs[0] if audio_dirs else base / "Audios"
    transcript_dirs = _find(base, ["Transcripts", "Transcript", "Transcription", "Transcriptions"], want_dir=True,
                            depth=1)
    problems = _Problems(corpus, root)
    detailed = labels_csv.parent / "labels_detailed.csv"
    votes = _msp_votes(detailed, corpus, problems) if detailed.is_file() else {}
    rows = _read_csv(labels_csv, ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender",
                                  "Split_Set"), corpus)
    sets = sorted({r["Split_Set"] for r in rows})
    if test_set.lower() not in {s.lower() for s in sets}:
        raise CorpusError(f"{corpus}: --test-set {test_set} is not a Split_Set of {labels_csv} ({', '.join(sets)})")
    entries, left_out, dropped = [], Counter(), Counter()
    for i, row in enumerate(rows, start=2):
        split_set = row["Split_Set"].strip()
        split = "test" if split_set.lower() == test_set.lower() else _MSP_SPLITS.get(split_set.lower())
        if split is None:
            left_out[split_set] += 1
            continue
        label = _msp_category(row["EmoClass"]) if len(row["EmoClass"].strip()) == 1 else None
        if label is None:
            problems.add(f"{labels_csv}:{i}", f"unknown EmoClass {row['EmoClass']!r}")
            continue
        if label in ("other", "unknown") and not all_labels:
            dropped[label] += 1
            continue
        try:
            act, val, dom = (float(row[c]) for c in ("EmoAct", "EmoVal", "EmoDom"))
        except ValueError:
            problems.add(f"{labels_csv}:{i}", "EmoAct / EmoVal / EmoDom are not numbers")
            continue
        audio = audio_dir / row["FileName"]
        if not audio.is_file():
            problems.add(audio, f"audio missing for row {i} of {labels_csv.name}")
            continue
        speaker = row["SpkrID"].strip()
        stem = Path(row["FileName"]).stem
        extra = {}
        if transcript_dirs:
            words = transcript_dirs[0] / f"{stem}.txt"
            extra["text"] = _one_line(words.read_text(encoding="utf-8", errors="replace")) if words.is_file() else ""
        entries.append(_entry(audio, stem, label, "" if speaker.lower() in ("unknown", "") else speaker,
                              _GENDER_WORDS.get(row["Gender"].strip().lower(), ""), split=split,
                              arousal=_scaled(act, 1, 7), valence=_scaled(val, 1, 7), dominance=_scaled(dom, 1, 7),
                              votes=format_votes(votes.get(stem, {})), **extra))
    if left_out:
        log.info("%s: left out the segments of %s (--test-set %s is the test set)", corpus,
                 ", ".join(f"{k} ({v})" for k, v in sorted(left_out.items())), test_set)
    if dropped:
        log.info("%s: left out %s -- --all-labels keeps them", corpus,
                 ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    return _finish(corpus, root, entries, problems)
