"""Model cost table: parameters, weight size, size on disk, FLOPs per audio second, measured forward time per clip
length and one fine-tuning step, for every model given, measured in this one run (Gavali & Verma's Tables 5-6,
Park et al.'s Table 7).

    python benchmarks/cost.py MODEL [MODEL ...] [--seconds 3 5 10 15] [--batch 4] [--repeats 3] [--no-train]
                              [--device cpu] [--out cost.md] [--json cost.json]

MODEL: any upstream spec (a checkpoint, hf:NAME, cnn14, cnn14:PANNS_FILE) or a fine-tuned export (its head is then
part of the forward). Figures are comparable within one table only: the machine line says where they were taken.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--seconds", type=float, nargs="+", default=[4.0], help="clip lengths (default 4)")
    p.add_argument("--batch", type=int, default=4, help="clips per fine-tuning step (default 4, as Gavali & Verma)")
    p.add_argument("--classes", type=int, default=8, help="classes of the step's head (default 8, RAVDESS)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up; the minimum counts")
    p.add_argument("--no-train", action="store_true", help="skip the fine-tuning step")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")
    p.add_argument("--out", default=None, help="also write the markdown (machine line + table) here")
    p.add_argument("--json", default=None, help="also write every figure as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    import torch

    from emotion2vec.analysis.cost import cost_table, measure_costs
    from emotion2vec.errors import Emotion2VecError
    from emotion2vec.io.atomic import atomic_write_text

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        costs = measure_costs(args.models, seconds=args.seconds, batch=args.batch, classes=args.classes,
                              repeats=args.repeats, train=not args.no_train, device=args.device,
                              trust=args.trust_checkpoint)
    except Emotion2VecError as e:
        print(f"cost: error: {e}", file=sys.stderr)
        return 2
    text = machine_line() + "\n\n" + cost_table(costs)
    print(text, end="")
    if args.out:
        atomic_write_text(args.out, text)
    if args.json:
        atomic_write_text(args.json, json.dumps({"machine": text.splitlines()[0],
                                                 "models": [c.to_dict() for c in costs]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
