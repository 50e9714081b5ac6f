"""M3ED (Chinese TV series): annotation.json and the movie-level split lists."""

from __future__ import annotations

import json

from .base import (CorpusError, _layout, corpus_spec, _Problems, _check_root, _rel_key, _find, _entry, _finish,
                   _GENDER_WORDS)


_M3ED_LABELS = {"neutral": "neutral", "happy": "happy", "surprise": "surprise", "sad": "sad", "disgust": "disgust",
                "anger": "angry", "fear": "fear"}


@corpus_spec('m3ed', "original", "M3ED (Chinese), 7 classes, official movie-level split",
             layout=('annotation.json (movie -> dialog -> Dialog -> utterance {Speaker, '
                     'EmoAnnotation.final_main_emo}), splitInfo/movie_list_{train,val,test}.txt and '
                     'modality_speech/<SpeakerLetter>_<utterance_id>.wav'))
def prepare_m3ed(root) -> list[dict]:
    """M3ED (Chinese TV): annotation.json + splitInfo/movie_list_{train,val,test}.txt + modality_speech/; 7 labels
    (final_main_emo), speaker = ``<movie>_<character name>``, split from the movie lists (speaker-disjoint)."""
    corpus = "m3ed"
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    ann = _find(root, ["annotation.json"], want_dir=False, depth=2)
    if not ann:
        raise CorpusError(f"{corpus}: annotation.json not found under {root}. Expected layout: {_layout(corpus)}")
    base = ann[0].parent
    try:
        meta = json.loads(ann[0].read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorpusError(f"{corpus}: {ann[0]}: invalid JSON ({e.msg}, line {e.lineno})") from None
    split_of: dict[str, str] = {}
    for name, split in (("train", "train"), ("val", "valid"), ("test", "test")):
        lists = _find(root, [f"movie_list_{name}.txt"], want_dir=False, depth=3)
        if not lists:
            problems.add(base / "splitInfo" / f"movie_list_{name}.txt", "split list not found")
            continue
        for movie in lists[0].read_text(encoding="utf-8").split():
            if movie in split_of and split_of[movie] != split:
                problems.add(lists[0], f"movie {movie} is in both {split_of[movie]} and {split}")
            split_of[movie] = split
    speech = _find(root, ["modality_speech"], want_dir=True, depth=2)
    speech_dir = speech[0] if speech else base / "modality_speech"
    if not speech_dir.is_dir():
        problems.add(speech_dir, "audio folder not found")
        problems.raise_if_any()
    entries = []
    if not isinstance(meta, dict):
        raise CorpusError(f"{corpus}: {ann[0]}: expected an object movie -> dialog -> ...")
    for movie in sorted(meta):
        if movie not in split_of:
            problems.add(ann[0], f"movie {movie!r} is in no splitInfo/movie_list_*.txt")
            continue
        dialogs = meta[movie] if isinstance(meta[movie], dict) else {}
        for clip in sorted(dialogs):
            info = dialogs[clip] if isinstance(dialogs[clip], dict) else {}
            spk_info = info.get("SpeakerInfo") or {}
            utts = info.get("Dialog")
            if not isinstance(utts, dict):
                problems.add(ann[0], f"{movie}/{clip}: no 'Dialog' object")
                continue
            for utt_id in sorted(utts):
                utt = utts[utt_id] if isinstance(utts[utt_id], dict) else {}
                spk = str(utt.get("Speaker", "")).strip()
                emo = (utt.get("EmoAnnotation") or {}).get("final_main_emo")
                if isinstance(emo, list):
                    emo = emo[0] if len(emo) == 1 else None
                emo = str(emo).strip().lower() if emo is not None else ""
                if emo not in _M3ED_LABELS:
                    problems.add(ann[0], f"{movie}/{clip}/{utt_id}: unknown final_main_emo {emo!r}")
                    continue
                if not spk:
                    problems.add(ann[0], f"{movie}/{clip}/{utt_id}: no Speaker")
                    continue
                wav = speech_dir / f"{spk}_{utt_id}.wav"
                if not wav.is_file():
                    problems.add(wav, f"audio missing for {utt_id}")
                    continue
                who = spk_info.get(spk) if isinstance(spk_info, dict) else None
                who = who if isinstance(who, dict) else {}
                name = str(who.get("Name") or "").strip()
                gender = _GENDER_WORDS.get(str(who.get("Gender") or "").strip().lower(), "")
                speaker = f"{movie}_{name}" if name else f"{movie}_{clip}_{spk}"
                entries.append(_entry(wav, _rel_key(wav, root), _M3ED_LABELS[emo], speaker, gender,
                                      split=split_of[movie]))
    return _finish(corpus, root, entries, problems)
