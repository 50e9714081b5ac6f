"""``emotion2vec predict MODEL INPUTS...``: the emotion each file (or each window of a long recording) carries."""

from __future__ import annotations

import argparse
import sys

from ..extract import DTYPE_NAMES
from ..models.config import ATTENTION_IMPLEMENTATIONS

EXAMPLES = """\
models: an emotion2vec+ folder from FunASR / ModelScope / Hugging Face (model.pt + config.yaml + tokens.txt), its
`emotion2vec convert` output, or a model exported by `emotion2vec finetune`.

output: one row per input (per window with --window): key, [start end], label (English), p_<label> for every
label, status, path. .jsonl also keeps the model's own label strings (label_raw, scores_raw).

examples:
  emotion2vec predict checkpoints/emotion2vec_plus_base recordings/ --out predictions.tsv
  emotion2vec predict checkpoints/emotion2vec_plus_base talk.wav --window 3 --hop 1.5 --plot timelines/
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.add_argument("model", metavar="MODEL", help="a model with a classification head (see below)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive), data.tsv / "
                   "fairseq .tsv, wav.scp or .jsonl")
    p.add_argument("--out", metavar="FILE", help="write the table to FILE (.tsv or .jsonl) instead of stdout")
    p.add_argument("--window", type=float, metavar="S", help="one prediction per window of S seconds")
    p.add_argument("--hop", type=float, metavar="S", help="window start every S seconds (default: --window)")
    p.add_argument("--plot", metavar="DIR", help="with --window: a timeline PNG per input in DIR (<key>.png)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", choices=(*DTYPE_NAMES, "auto"), default="float32", help="compute dtype (default "
                   "float32; int8 on a CPU; auto = the fastest measured for the device and model, as emotion2vec "
                   "extract)")
    p.add_argument("--attention", choices=ATTENTION_IMPLEMENTATIONS, default="sdpa", help="attention (default sdpa)")
    p.add_argument("--max-tokens", type=int, default=None, help="max padded samples per batch (default as extract)")
    p.add_argument("--num-workers", type=int, default=1, help="decoding processes (default 1; 0 = main process)")
    p.add_argument("--chunk-seconds", type=float, default=30.0, help="inputs longer than this run in stitched "
                   "windows through the encoder (default 30)")
    p.add_argument("--skip-errors", action="store_true", help="exit 0 even if some inputs failed (they are listed)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..extract.backends import ModelBackend, resolve_dtype
    from ..extract.engine import BatchedForward
    from ..models.upstream import load_upstream
    from ..recognize import RecognitionError
    from ..recognize.recognizer import Recognizer
    from ..recognize.run import check_window, predict, write_outputs

    check_window(args.window, args.hop)
    if args.plot and not args.window:
        raise RecognitionError("--plot draws the timeline of windows: give --window")
    if args.out and not str(args.out).endswith((".tsv", ".jsonl")):
        raise RecognitionError(f"--out {args.out}: give a .tsv or .jsonl file")
    model, ckpt = load_upstream(args.model, trust=args.trust_checkpoint)
    if ckpt.classifier is None:
        raise RecognitionError(f"{args.model}: no classification head in this checkpoint (it gives features: "
                               f"`emotion2vec extract`); use an emotion2vec+ model or one from `emotion2vec finetune`")
    recognizer = Recognizer.from_spec(ckpt.classifier, model.cfg.num_layers, model.cfg.embed_dim, args.model)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecognitionError("--device cuda requested but CUDA is not available")
    model.set_attention_implementation(args.attention)
    backend = ModelBackend(model, device, resolve_dtype(args.dtype, device, model.cfg.embed_dim),
                           description=args.model)
    engine = BatchedForward(backend, [recognizer.layer], args.max_tokens, args.chunk_seconds)
    predictions = predict(engine, recognizer.to(device), args.inputs, args.window, args.hop, args.num_workers,
                          progress=not args.quiet)
    write_outputs(predictions, recognizer, args.out, args.plot)
    failed = [p for p in predictions if p.error is not None]
    for p in failed:
        print(f"error: {p.path}: {p.error}", file=sys.stderr)
    return 1 if failed and not args.skip_errors else 0
