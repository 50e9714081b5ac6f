"""IEMOCAP: the EmoEvaluation label files, votes, dimensions, transcripts and dialogue times."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ...io.manifests import format_votes
from .base import (log, CorpusError, _layout, corpus_spec, _Problems, _check_root, _hidden, _rel_key, _find, _entry,
                   _finish, _one_line, _scaled)


_IEMOCAP_4 = {"ang": "angry", "hap": "happy", "exc": "happy", "neu": "neutral", "sad": "sad"}
_IEMOCAP_ALL = {"ang": "angry", "hap": "happy", "exc": "excited", "neu": "neutral", "sad": "sad",
                "fru": "frustrated", "sur": "surprise", "fea": "fear", "dis": "disgust", "oth": "other",
                "xxx": "unknown"}
_IEMOCAP_UTT = re.compile(r"Ses0([1-5])([FM])_(.+)_([FM])(\d{3})")
#: the evaluators' category names (``C-E2:<TAB>Frustration; Anger;<TAB>()``) -> labels
_IEMOCAP_VOTE = {"neutral state": "neutral", "neutral": "neutral", "frustration": "frustrated", "anger": "angry",
                 "sadness": "sad", "happiness": "happy", "excited": "excited", "surprise": "surprise",
                 "fear": "fear", "disgust": "disgust", "other": "other"}
_IEMOCAP_VAD = re.compile(r"\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]")
_IEMOCAP_TIME = re.compile(r"\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]")
#: a transcription line: ``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.``
_IEMOCAP_LINE = re.compile(r"(Ses0[1-5][FM]_\S+_[FM]\d{3})\s*\[[^\]]*\]\s*:\s?(.*)")


def _iemocap_transcripts(sess_dir: Path) -> dict[str, str] | None:
    """Utterance id -> its words, from ``dialog/transcriptions/<dialog>.txt``; None when the folder is absent."""
    folder = sess_dir / "dialog" / "transcriptions"
    if not folder.is_dir():
        return None
    text = {}
    for f in sorted(folder.glob("*.txt")):
        if _hidden(f.name):
            continue
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _IEMOCAP_LINE.match(line.strip())
            if m:
                text[m.group(1)] = _one_line(m.group(2))
    return text



@corpus_spec('iemocap', "loso-session", "IEMOCAP, 4 classes (5531 utt.), 10 speakers",
             layout=("IEMOCAP_full_release/Session{1-5}/dialog/EmoEvaluation/<dialog>.txt (lines '[start - "
                     "end]<TAB>Ses01F_impro01_M000<TAB>neu<TAB>[V, A, D]') and "
                     'Session{1-5}/sentences/wav/<dialog>/<utterance>.wav; --root = IEMOCAP_full_release (or its '
                     'parent)'),
             options=("all_labels",))
def prepare_iemocap(root, all_labels: bool = False) -> list[dict]:
    """IEMOCAP. 4 classes by default (ang, hap+exc -> happy, neu, sad: 5531 utterances); ``all_labels`` keeps
    every label (exc stays ``excited``, xxx -> ``unknown``, oth -> ``other``: EMO-SUPERB's label set).
    speaker = session + gender of the utterance's own speaker (``Ses01M`` for ``Ses01F_impro01_M000``: the letter
    before the utterance number, not the dialog's), extra columns ``session`` (``Ses01``), ``dialog``
    (``Ses01F_impro01``), ``start`` / ``end`` (the utterance's ``[start - end]`` in the dialogue, seconds) and
    ``text`` (its words from ``dialog/transcriptions/<dialog>.txt``, when that folder exists; empty for an
    utterance the transcripts lack).
    ``votes``: one vote per category an evaluator named on the utterance's ``C-E*`` (annotators), ``C-F*`` and
    ``C-M*`` (the actors' self-evaluations) lines (Excited counts as happy unless ``all_labels``);
    ``valence``, ``arousal``, ``dominance``: the ``[V, A, D]`` consensus (1-5) scaled to [0, 1] by (x - 1) / 4."""
    corpus = "iemocap"
    root = _check_root(corpus, root)
    base = root
    if not any((root / f"Session{i}").is_dir() for i in range(1, 6)):
        found = _find(root, [f"Session{i}" for i in range(1, 6)], want_dir=True, depth=2)
        if not found:
            raise CorpusError(f"{corpus}: no Session1..Session5 folder under {root}. Expected layout: "
                              f"{_layout(corpus)}")
        base = found[0].parent
    problems = _Problems(corpus, base)
    entries, utt_ids = [], {}
    dropped: Counter = Counter()
    table = _IEMOCAP_ALL if all_labels else _IEMOCAP_4
    for n in range(1, 6):
        sess_dir = base / f"Session{n}"
        if not sess_dir.is_dir():
            continue
        emo_dir = sess_dir / "dialog" / "EmoEvaluation"
        label_files = sorted(p for p in emo_dir.glob("*.txt") if not _hidden(p.name)) if emo_dir.is_dir() else []
        if not label_files:
            problems.add(emo_dir, "no label files (<dialog>.txt) found")
            continue
        transcripts = _iemocap_transcripts(sess_dir)
        for lf in label_files:
            current: dict | None = None  # the entry the following C-* vote lines belong to
            for lineno, line in enumerate(lf.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if re.match(r"C-[EFM]\d*:", line):
                    if current is not None:
                        for name in line.split("\t")[1].split(";") if "\t" in line else []:
                            name = name.split(":")[0].strip().lower()
                            if not name:
                                continue
                            if name not in _IEMOCAP_VOTE:
                                problems.add(f"{lf}:{lineno}", f"unknown category {name!r} in {line.strip()!r}")
                                continue
                            vote = _IEMOCAP_VOTE[name]
                            vote = "happy" if vote == "excited" and not all_labels else vote
                            current["_votes"][vote] = current["_votes"].get(vote, 0) + 1
                    continue
                if not line.startswith("["):
                    continue
                current = None
                parts = [p.strip() for p in line.split("\t")]
                if len(parts) < 3:
                    problems.add(f"{lf}:{lineno}", f"expected '[start - end]<TAB>utterance<TAB>label', got {line!r}")
                    continue
                utt, emo = parts[1], parts[2].lower()
                m = _IEMOCAP_UTT.fullmatch(utt)
                if not m:
                    problems.add(f"{lf}:{lineno}", f"utterance id {utt!r} does not look like Ses01F_impro01_M000")
                    continue
                if int(m.group(1)) != n:
                    problems.add(f"{lf}:{lineno}", f"utterance {utt} listed under Session{n}")
                    continue
                if emo not in _IEMOCAP_ALL:
                    problems.add(f"{lf}:{lineno}", f"unknown label {emo!r} for {utt}")
                    continue
                if emo not in table:
                    dropped[emo] += 1
                    continue
                dialog = utt.rsplit("_", 1)[0]
                wav = sess_dir / "sentences" / "wav" / dialog / f"{utt}.wav"
                if not wav.is_file():
                    problems.add(wav, f"audio missing for labelled utterance {utt}")
                    continue
                vad = _IEMOCAP_VAD.fullmatch(parts[3]) if len(parts) > 3 else None
                if not vad:
                    problems.add(f"{lf}:{lineno}", f"no [V, A, D] triple for {utt}")
                    continue
                when = _IEMOCAP_TIME.fullmatch(parts[0])
                if not when:
                    problems.add(f"{lf}:{lineno}", f"no [start - end] time for {utt}")
                    continue
                gender = m.group(4)
                key = _rel_key(wav, base)
                utt_ids[key] = utt
                v, a, d = (float(x) for x in vad.groups())
                extra = {} if transcripts is None else {"text": transcripts.get(utt, "")}
                current = _entry(wav, key, table[emo], f"Ses0{n}{gender}", gender, session=f"Ses0{n}",
                                 dialog=dialog, start=f"{float(when.group(1)):.4f}", end=f"{float(when.group(2)):.4f}",
                                 valence=_scaled(v, 1, 5), arousal=_scaled(a, 1, 5), dominance=_scaled(d, 1, 5),
                                 **extra, _votes={})
                entries.append(current)
    for e in entries:
        e["votes"] = format_votes(e.pop("_votes"))
    if dropped:
        log.info("iemocap: kept %d utterances (%s); left out %d with other labels (%s) -- --all-labels keeps them",
                 len(entries), "4 classes, exc merged into happy" if not all_labels else "all labels",
                 sum(dropped.values()), ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())))
    return _finish(corpus, base, entries, problems, utt_ids=utt_ids)
