"""``emotion2vec export``: a checkpoint as an ONNX graph for ONNX Runtime (dynamic batch and length, padding mask in
the graph, the chosen layers), optionally with int8 linear layers."""

from __future__ import annotations

import argparse

from .options import layer_list, preset_name

EXAMPLES = """\
examples:
  emotion2vec export checkpoints/emotion2vec_base.pt --onnx emotion2vec_base.onnx
  emotion2vec export checkpoints/emotion2vec_base.pt --onnx emotion2vec_base_int8.onnx --quantize int8 --layers all
  emotion2vec extract --checkpoint emotion2vec_base.onnx --backend onnxruntime --input my_wavs/ --out features/x
"""


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"onnx": "file"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.add_argument("checkpoint", help="emotion2vec / data2vec 2.0 fairseq .pt, FunASR folder or our converted folder")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the graph to write")
    p.add_argument("--layers", type=layer_list, default="-1",
                   help="blocks whose outputs the graph returns: -1 (last, default), all, "
                   "or comma-separated indices counted from 0 with prenet blocks first; extraction can then pick "
                   "any of them")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="int8: dynamic quantisation of the linear layers (int8 weights per output channel, "
                   "activations quantised per call; convolutions stay fp32). Faster and 3x smaller, with a "
                   "feature error of a few percent (docs/performance.md)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects in the "
                   "checkpoint (can run code: only for files you trust)")
    p.add_argument("--preset", type=preset_name, help="architecture preset for a bare state dict without config")


def run(args: argparse.Namespace) -> int:
    from ..extract.export import export_onnx

    info = export_onnx(args.checkpoint, args.onnx, args.layers, args.quantize, args.trust_checkpoint, args.preset)
    print(f"wrote {info['path']} ({info['bytes'] / 2**20:.1f} MiB; layers {info['layers']}; quantize "
          f"{info['quantize']}{', %d linear layers in int8' % info['matmuls_int8'] if info['matmuls_int8'] else ''}); "
          f"ONNX Runtime vs torch fp32 on a padded batch: max abs difference {info['max_abs_error']:.1e}")
    return 0
