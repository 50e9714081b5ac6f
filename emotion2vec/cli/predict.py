"""``emotion2vec predict MODEL INPUTS...``: the emotion each file (or each window of a long recording) carries."""

from __future__ import annotations

import argparse
import sys

from ..extract import DTYPE_NAMES
from ..models.config import ATTENTION_IMPLEMENTATIONS
from .options import device, max_tokens, non_negative_int, positive_float

#: a batch budget below one second of 16 kHz audio holds no input

EXAMPLES = """\
models: an emotion2vec+ folder from FunASR / ModelScope / Hugging Face (model.pt + config.yaml + tokens.txt), its
`emotion2vec convert` output, or a model exported by `emotion2vec finetune`.

output: one row per input (per window with --window): key, [start end], label (English), p_<label> for every
label, status, path. .jsonl also keeps the model's own label strings (label_raw, scores_raw).

examples:
  emotion2vec predict checkpoints/emotion2vec_plus_base recordings/ --out predictions.tsv
  emotion2vec predict checkpoints/emotion2vec_plus_base talk.wav --window 3 --hop 1.5 --plot timelines/
  torchrun --nproc_per_node 4 -m emotion2vec predict checkpoints/emotion2vec_plus_base manifests/urdu/data.tsv \
      --out predictions.tsv --device cuda      (sharded: one GPU per process; process 0 writes the table)

If every input fails, an existing --out file is left as it was.
"""


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "file", "plot": "dir"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.add_argument("model", metavar="MODEL", help="a model with a classification head (see below)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive), data.tsv / "
                   "fairseq .tsv, wav.scp or .jsonl")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE (.tsv or .jsonl) instead of stdout")
    p.add_argument("--window", type=positive_float, metavar="S", help="one prediction per window of S seconds")
    p.add_argument("--hop", type=positive_float, metavar="S", help="window start every S seconds (default: --window)")
    p.add_argument("--plot", metavar="DIR", help="with --window: a timeline PNG per input in DIR (<key>.png)")
    p.add_argument("--device", type=device(), default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", choices=(*DTYPE_NAMES, "auto"), default="float32", help="compute dtype (default "
                   "float32; int8 on a CPU; auto = the fastest measured for the device and model, as emotion2vec "
                   "extract)")
    p.add_argument("--attention", choices=ATTENTION_IMPLEMENTATIONS, default="sdpa", help="attention (default sdpa)")
    p.add_argument("--max-tokens", type=max_tokens, default=None,
                   help="max padded samples per batch (default as extract)")
    p.add_argument("--num-workers", type=non_negative_int, default=1,
                   help="decoding processes (default 1; 0 = main process)")
    p.add_argument("--chunk-seconds", type=positive_float, default=30.0, help="inputs longer than this run in stitched "
                   "windows through the encoder (default 30)")
    p.add_argument("--skip-errors", action="store_true", help="exit 0 even if some inputs failed (they are listed)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..distributed import join
    from ..recognize import RecognitionError
    from ..recognize.run import check_window

    check_window(args.window, args.hop)
    if args.plot and not args.window:
        raise RecognitionError("--plot draws the timeline of windows: give --window")
    if args.out and not str(args.out).endswith((".tsv", ".jsonl")):
        raise RecognitionError(f"--out {args.out}: give a .tsv or .jsonl file")
    processes, device = join(args.device)
    try:
        return _run(args, processes, device)
    finally:
        processes.close()


def _run(args: argparse.Namespace, processes, device) -> int:
    from ..recognize.run import load_recognition, predict, write_outputs

    engine, recognizer = load_recognition(args.model, device, args.dtype, args.attention, args.max_tokens,
                                          args.chunk_seconds, args.trust_checkpoint)
    predictions = predict(engine, recognizer, args.inputs, args.window, args.hop, args.num_workers,
                          progress=not args.quiet, processes=processes)
    if not processes.main:
        return 0
    written = write_outputs(predictions, recognizer, args.out, args.plot)
    failed = [p for p in predictions if p.error is not None]
    for p in failed:
        print(f"error: {p.path}: {p.error}", file=sys.stderr)
    if not written:
        print(f"every input failed: {args.out} is left as it was", file=sys.stderr)
    return 1 if failed and not args.skip_errors else 0
