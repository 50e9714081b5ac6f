"""Layer pruning (``finetune --layer N``, :func:`emotion2vec.models.prune.prune_upstream`): size on disk and forward
time per second of audio of the pruned model against the full model it comes from, measured in the same run.

The model: a checkpoint (``--checkpoint``) or the base preset with random weights (12 blocks: 4 prenet + 8 main);
``--layers`` the layers the pruned models keep up to (default: a quarter, half and three quarters of the blocks).
Each model is saved in our format (model.safetensors: the size column) and read back; its time is the best of
``--repeats`` forwards of a ``--seconds`` input on the CPU (one thread unless ``--threads``), the output of its last
layer only. The models take turns within every repeat, so a busy machine slows them alike.

    python benchmarks/prune.py [--checkpoint PATH] [--layers 2 5 8] [--seconds 10] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load(checkpoint: str | None):
    from emotion2vec.models.config import preset
    from emotion2vec.models.encoder import Emotion2VecModel
    from emotion2vec.models.upstream import load_upstream

    if checkpoint:
        return load_upstream(checkpoint)[0]
    torch.manual_seed(0)
    return Emotion2VecModel(preset("emotion2vec_base"), with_decoder=False).eval()


def _times(models: list, seconds: float, repeats: int) -> list[float]:
    """Best seconds per audio second of each model, the models taking turns within every repeat."""
    x = torch.randn(1, int(seconds * 16000))
    best = [float("inf")] * len(models)
    with torch.inference_mode():
        for model in models:
            model.extract_features(x, layers=[-1], ffn=())  # warm-up
        for _ in range(repeats):
            for i, model in enumerate(models):
                t = time.perf_counter()
                model.extract_features(x, layers=[-1], ffn=())
                best[i] = min(best[i], time.perf_counter() - t)
    return [b / seconds for b in best]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="the full model (default: the base preset, random weights)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="layers kept up to (default: 1/4, 1/2, 3/4)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from _machine import machine_line
    from emotion2vec.models.checkpoint import save_checkpoint_dir
    from emotion2vec.models.prune import prune_upstream
    from emotion2vec.models.upstream import load_upstream

    torch.set_num_threads(args.threads)
    print(machine_line())
    full = _load(args.checkpoint)
    total = full.cfg.num_layers
    layers = args.layers or sorted({max(0, total // 4 - 1), total // 2 - 1, 3 * total // 4 - 1})
    rows, models = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for layer in [total - 1] + layers:
            model = _load(args.checkpoint)
            if layer != total - 1:
                prune_upstream(model, layer)
            folder = Path(tmp) / f"l{layer}"
            save_checkpoint_dir(folder, model.cfg, model.state_dict())
            models.append(load_upstream(folder)[0].eval())
            rows.append((layer, models[-1].cfg.num_layers, (folder / "model.safetensors").stat().st_size / 2**20))
    times = _times(models, args.seconds, args.repeats)
    rows = [(*r, t) for r, t in zip(rows, times)]
    full_size, full_time = rows[0][2], rows[0][3]
    print(f"| Model | Blocks | model.safetensors (MiB) | ms per audio second ({args.seconds:g} s input, "
          f"{args.threads} thread(s)) | Size vs full | Time vs full |")
    print("|---|---:|---:|---:|---:|---:|")
    for layer, blocks, size, per_second in rows:
        name = "full" if layer == total - 1 else f"pruned after layer {layer}"
        print(f"| {name} | {blocks} | {size:.1f} | {1000 * per_second:.1f} | {size / full_size:.2f} | "
              f"{per_second / full_time:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
