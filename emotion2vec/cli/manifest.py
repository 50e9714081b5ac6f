"""``emotion2vec manifest``: audio folders -> fairseq pretraining manifests (train.tsv / valid.tsv)."""

from __future__ import annotations

import argparse
import sys

from ..io.audio import AUDIO_EXTENSIONS
from .options import fraction, non_negative_float, non_negative_int


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir", "resample_to": "dir"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("Each AUDIO_DIR is one corpus of the hours table (printed, and OUT/hours.md). Containers FFmpeg reads "
                "(.mp4, .m4a, ...) are decoded with PyAV (pip install 'emotion2vec[media]').\n\n"
                "example:\n  emotion2vec manifest /data/IEMOCAP /data/podcasts --out manifests/pretrain "
                "--resample-to /data/pretrain_16k --valid-fraction 0.01 --exclude manifests/iemocap/data.tsv:session=Ses05")
    p.add_argument("audio_dirs", nargs="+", metavar="AUDIO_DIR", help="folders scanned recursively for "
                   + "/".join(e.lstrip(".") for e in AUDIO_EXTENSIONS) + " files; NAME=DIR names the corpus "
                   "(folders given the same NAME are one corpus of the hours table)")
    p.add_argument("--out", required=True, help="output folder for train.tsv (and valid.tsv), e.g. manifests/NAME")
    p.add_argument("--valid-fraction", type=fraction, default=0.0,
                   help="random fraction held out as valid.tsv (default 0)")
    p.add_argument("--resample-to", metavar="DIR", help="convert files that are not 16 kHz mono into DIR "
                   "(16 kHz mono FLAC); without it such files make the command fail with their list")
    p.add_argument("--seed", type=int, default=0, help="seed of the valid split (default 0)")
    p.add_argument("--verify", action="store_true", help="decode every file fully (slower; catches corrupt data "
                   "behind a valid header)")
    p.add_argument("--num-workers", type=non_negative_int, default=1,
                   help="processes for conversion (default 1; 0 = this process)")
    p.add_argument("--min-seconds", type=non_negative_float, default=0.5,
                   help="leave out clips shorter than this (default 0.5 "
                   "= the pretraining configs' crop minimum, task.min_sample_size 8000); 0 keeps every clip")
    p.add_argument("--exclude", action="append", default=[], metavar="LIST",
                   help="leave out the utterances of LIST (a data.tsv, wav.scp, .jsonl or .tsv: e.g. the test set you "
                        "will evaluate on), matched by path or by file name without extension; data.tsv:COLUMN=VALUE "
                        "takes only the rows with that value (manifests/iemocap/data.tsv:session=Ses05); repeatable")


def run(args: argparse.Namespace) -> int:
    from ..pretrain.manifest import build_manifest

    res = build_manifest(args.audio_dirs, args.out, args.valid_fraction, args.resample_to, args.seed, args.verify,
                         args.num_workers, log=lambda m: print(m, file=sys.stderr), min_seconds=args.min_seconds,
                         exclude=args.exclude)
    converted = f"converted {res.converted}" + (f" (reused {res.reused} converted earlier)" if res.reused else "")
    print(f"wrote {res.out / 'train.tsv'} ({res.train} files)" + (f" and valid.tsv ({res.valid})" if res.valid else "")
          + f", {res.hours:.2f} h; {converted}; skipped {len(res.unreadable)} unreadable")
    from ..pretrain.manifest import hours_table

    print(hours_table(res.corpora), end="")
    return 1 if res.unreadable else 0
