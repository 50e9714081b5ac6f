"""Any corpus laid out as one folder per label (speaker from the file name with a regular expression)."""

from __future__ import annotations

import re
from collections import Counter

from ...io.audio import AUDIO_EXTENSIONS
from .base import (log, CorpusError, canonical_label, parse_label_map, corpus_spec, _Problems, _check_root, _walk,
                   _rel_key, _entry, _finish, _GENDER_WORDS, _nfc)


@corpus_spec('folder', "auto", "any <label>/ folder tree",
             layout=('<label>/**/<file>.{wav,flac,ogg,mp3}: one sub-folder per label; speaker from the file name with '
                     "--speaker-regex (named group 'speaker' or the first group; optional group 'gender' = M/F)"),
             options=("speaker_regex", "label_map"))
def prepare_folder(root, speaker_regex: str | None = None, label_map=None) -> list[dict]:
    """Any corpus with one sub-folder per label: ``<label>/**/<file>``. Label = folder name, lower-cased, common
    spellings made canonical, then ``label_map`` (matched on the folder name or the canonical label; an empty
    target drops that label). ``speaker_regex`` is searched in the file name without extension: the named group
    ``speaker`` (else the first group, else the whole match) is the speaker, an optional group ``gender``
    (M/F/male/female) the gender. Without it the speaker is empty (only random-kfold then applies)."""
    corpus = "folder"
    root = _check_root(corpus, root)
    problems = _Problems(corpus, root)
    mapping = parse_label_map(label_map)
    regex = None
    if speaker_regex:
        try:
            regex = re.compile(speaker_regex)
        except re.error as e:
            raise CorpusError(f"folder: --speaker-regex {speaker_regex!r} is not a valid regular expression: {e}")
    entries, dropped, used = [], Counter(), set()
    for path in _walk(root, AUDIO_EXTENSIONS):
        rel = path.relative_to(root)
        if len(rel.parts) < 2:
            problems.add(rel, "file directly under the root; put it in a <label>/ folder")
            continue
        folder = _nfc(rel.parts[0]).strip()
        low = folder.lower()
        label = mapping.get(low, mapping.get(canonical_label(low), canonical_label(low)))
        used.update(k for k in (low, canonical_label(low)) if k in mapping)
        if label == "":
            dropped[folder] += 1
            continue
        speaker, gender = "", ""
        if regex is not None:
            m = regex.search(path.stem)
            if not m:
                problems.add(rel, f"--speaker-regex {speaker_regex!r} does not match {path.stem!r}")
                continue
            gd = m.groupdict()
            speaker = gd.get("speaker") or (m.group(1) if m.re.groups else m.group(0)) or ""
            if "gender" in gd and gd["gender"]:
                gender = _GENDER_WORDS.get(gd["gender"].strip().lower(), "")
            if not speaker:
                problems.add(rel, f"--speaker-regex {speaker_regex!r} matched an empty speaker")
                continue
        entries.append(_entry(path, _rel_key(path, root), label, speaker, gender))
    unused = sorted(set(mapping) - used)
    if unused and not problems.items:
        raise CorpusError(f"folder: --label-map names {unused}, which match no label folder under {root}")
    if dropped:
        log.info("folder: dropped by --label-map: %s", ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    return _finish(corpus, root, entries, problems)
