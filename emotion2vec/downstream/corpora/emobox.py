"""An EmoBox data/<ds> folder imported with its folds."""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

from .base import CorpusError, canonical_label, _layout, corpus_spec, _Problems, _check_root, _entry, _finish


def _read_json_or_jsonl(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    out = []
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusError(f"emobox: {path}:{n}: invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict) or "key" not in obj:
                    raise CorpusError(f"emobox: {path}:{n}: expected an object with a 'key'")
                out.append(obj)
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorpusError(f"emobox: {path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    if isinstance(data, dict):
        return [{"key": k, **(v if isinstance(v, dict) else {})} for k, v in data.items()]
    if isinstance(data, list) and all(isinstance(x, dict) and "key" in x for x in data):
        return data
    raise CorpusError(f"emobox: {path}: expected {{key: {{wav, emo, ...}}}} or a list of objects with 'key'")


@corpus_spec('emobox', "emobox", "import an EmoBox data/<ds> folder with its folds",
             layout=('--emobox-data EmoBox/data/<ds> holding <ds>.jsonl (or <ds>.json), optional label_map.json and '
                     "data.seg.wrd.stm (speakers), fold_N/<ds>_{train,valid,test}_fold_N.jsonl (or .json); the 'wav' "
                     'paths (downloads/<ds>/...) are looked up under --root'),
             options=("emobox_data",))
def prepare_emobox(root, emobox_data=None) -> list[dict]:
    """Import an EmoBox dataset: rows from ``<ds>.jsonl``/``<ds>.json`` (key = EmoBox key, label via label_map.json
    when present, speaker from data.seg.wrd.stm when present), audio = the ``wav`` path looked up under ``root``
    (as given, without a leading ``downloads/``, or without ``downloads/<ds>/``), and EmoBox's folds as columns
    ``fold1``, ``fold2``, ... (train/valid/test/empty) for the ``emobox`` protocol."""
    corpus = "emobox"
    root = _check_root(corpus, root)
    if not emobox_data:
        raise CorpusError("emobox: --emobox-data DIR is required (EmoBox's data/<ds> folder). "
                          f"Expected layout: {_layout(corpus)}")
    data_dir = Path(os.path.abspath(os.path.expanduser(str(emobox_data))))
    if not data_dir.is_dir():
        raise CorpusError(f"emobox: --emobox-data {data_dir} is not a directory. Expected layout: {_layout(corpus)}")
    ds = data_dir.name
    meta_file = next((data_dir / f"{ds}{ext}" for ext in (".jsonl", ".json") if (data_dir / f"{ds}{ext}").is_file()),
                     None)
    if meta_file is None:
        cands = sorted(data_dir.glob("*.jsonl")) or sorted(p for p in data_dir.glob("*.json")
                                                          if p.name not in ("label_map.json", "label_dict.json"))
        if len(cands) != 1:
            raise CorpusError(f"emobox: {data_dir}: expected {ds}.jsonl or {ds}.json. Expected layout: "
                              f"{_layout(corpus)}")
        meta_file = cands[0]
    problems = _Problems(corpus, root)
    label_map: dict[str, str] = {}
    for name in ("label_map.json", "label_dict.json"):
        if (data_dir / name).is_file():
            raw = json.loads((data_dir / name).read_text(encoding="utf-8"))
            if isinstance(raw, dict):
                label_map = {str(k).strip().lower(): str(v) for k, v in raw.items()}
            break
    speakers: dict[str, str] = {}
    stm = data_dir / "data.seg.wrd.stm"
    if stm.is_file():
        for line in stm.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3:
                speakers[parts[0]] = parts[2]
    entries, seen = [], set()
    for obj in _read_json_or_jsonl(meta_file):
        key = str(obj["key"]).strip()
        wav = str(obj.get("wav") or obj.get("audio") or "").strip()
        emo = str(obj.get("emo") or obj.get("emotion") or "").strip()
        if not wav or not emo:
            problems.add(f"{meta_file.name}:{key}", "needs 'wav' and 'emo'")
            continue
        rel = wav.replace("\\", "/")
        cands = [Path(rel)] if os.path.isabs(rel) else []
        stripped = rel[len("downloads/"):] if rel.startswith("downloads/") else rel
        cands += [root / rel, root / stripped]
        if stripped.startswith(f"{ds}/"):
            cands.append(root / stripped[len(ds) + 1:])
        audio = next((c for c in cands if c.is_file()), None)
        if audio is None:
            problems.add(f"{meta_file.name}:{key}", f"audio {wav!r} not found under {root}")
            continue
        mapped = label_map.get(emo.lower(), emo)
        entries.append(_entry(audio, key, canonical_label(mapped), speakers.get(key, ""), ""))
        seen.add(key)
    fold_dirs = sorted((d for d in data_dir.iterdir() if d.is_dir() and re.fullmatch(r"fold_\d+", d.name)),
                       key=lambda d: int(d.name[5:]))
    if not fold_dirs:
        problems.add(data_dir, "no fold_N folders")
    membership: dict[str, dict[str, str]] = defaultdict(dict)
    for d in fold_dirs:
        n = int(d.name[5:])
        for split in ("train", "valid", "test"):
            files = [d / f"{ds}_{split}_fold_{n}{ext}" for ext in (".jsonl", ".json")]
            files = [f for f in files if f.is_file()] or sorted(
                p for p in d.iterdir() if re.fullmatch(rf".*_{split}_fold_{n}\.jsonl?", p.name))
            if not files:
                if split != "valid":
                    problems.add(d, f"no *_{split}_fold_{n}.jsonl/.json")
                continue
            for obj in _read_json_or_jsonl(files[0]):
                key = str(obj["key"]).strip()
                if key not in seen:
                    problems.add(files[0], f"key {key!r} is not in {meta_file.name} (or its audio was not found)")
                    continue
                prev = membership[key].get(f"fold{n}")
                if prev and prev != split:
                    problems.add(files[0], f"key {key!r} is in both {prev} and {split} of fold {n}")
                membership[key][f"fold{n}"] = split
    for e in entries:
        for d in fold_dirs:
            col = f"fold{int(d.name[5:])}"
            e[col] = membership[e["key"]].get(col, "")
    return _finish(corpus, root, entries, problems, multichannel_channel=2)
