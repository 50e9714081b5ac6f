"""``emotion2vec audit MANIFEST_DIR``: the leakage audit of a prepared corpus's folds."""

from __future__ import annotations

import argparse


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"json": "file"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Audit the train / valid / test splits of a prepared corpus (the --out of `emotion2vec "
                     "prepare`) for leakage, per fold: speakers shared between splits (how many test speakers "
                     "and what share of test utterances), identical decoded audio across splits, the same text "
                     "across splits (where data.tsv has a text column), and the label distribution per split.\n"
                     "A protocol that promises speaker independence but shares speakers is an error (exit 2); "
                     "an imported split (EmoBox folds, the official split) that shares them gets a warning.")
    p.epilog = ("examples:\n  emotion2vec audit manifests/urdu\n"
                "  emotion2vec audit manifests/iemocap --protocol session-rotation --json audit.json\n\n"
                "The decoded-audio hashes are cached in MANIFEST_DIR/audio_hashes.tsv: a second audit decodes nothing.")
    p.add_argument("manifest_dir", metavar="MANIFEST_DIR", help="folder with data.tsv and folds*.json")
    p.add_argument("--protocol", action="append", metavar="P",
                   help="audit these protocols' folds (computed from data.tsv when no folds file exists); "
                        "default: every folds*.json in the folder")
    p.add_argument("--no-audio", action="store_true", help="do not decode and compare the audio")
    p.add_argument("--json", metavar="FILE", help="also write the audits as JSON ({protocol: audit})")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..downstream.audit import HASH_CACHE, AuditError, audio_hashes, audit_folds, format_audit
    from ..downstream.folds import PROTOCOLS, FoldsError, load_folds, read_folds_file
    from ..downstream.prepare import parse_protocols
    from ..io.atomic import atomic_write_text
    from ..io.manifests import read_data_tsv

    folder = Path(args.manifest_dir)
    rows = read_data_tsv(folder / "data.tsv")
    protocols = parse_protocols(args.protocol)
    specs = []
    if protocols:
        specs = [load_folds(folder, p) for p in protocols]
    else:
        for path in [folder / "folds.json", *sorted(folder.glob("folds_*.json"))]:
            if path.is_file():  # read as probe and finetune read it: a broken file is named
                protocol = read_folds_file(path).get("protocol")
                if protocol not in PROTOCOLS:
                    raise FoldsError(f"{path}: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}; re-run "
                                     f"`emotion2vec prepare`")
                if all(protocol != s.get("protocol") for s in specs):
                    specs.append(load_folds(folder, protocol))
        if not specs:
            raise FoldsError(f"{folder}: no folds.json or folds_*.json (run `emotion2vec prepare`, or name a "
                             f"--protocol)")
    hashes, unreadable = (None, []) if args.no_audio else audio_hashes(rows, folder / HASH_CACHE, print)
    reports = {}
    for spec in specs:
        reports[spec["protocol"]] = audit_folds(rows, spec, hashes, unreadable, raise_errors=False)
        print(format_audit(reports[spec["protocol"]]))
    if args.json:
        atomic_write_text(args.json, json.dumps(reports, indent=1, ensure_ascii=False) + "\n")
    errors = [e for r in reports.values() for e in r["errors"]]
    if errors:
        raise AuditError(f"{len(errors)} split(s) break their protocol's speaker-independence promise (see above)")
    return 0
