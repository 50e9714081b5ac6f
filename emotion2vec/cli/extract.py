"""``emotion2vec extract``: frame- or utterance-level features of any layer, one .npy per input."""

from __future__ import annotations

import argparse
import os
import sys

from ..extract import DTYPE_NAMES, GRANULARITIES
from ..models.config import ATTENTION_IMPLEMENTATIONS
from .options import device, layer_list, max_tokens, non_negative_int, positive_float, preset_name

#: a batch budget below one second of 16 kHz audio holds no input

EXAMPLES = """\
examples:
  emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt --input my_wavs/ --out features/my_wavs
  emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt --input manifests/urdu/data.tsv \\
      --out features/urdu/emotion2vec_base --granularity utterance --layers all
  emotion2vec extract --checkpoint fbank --input manifests/urdu/data.tsv --out features/urdu/fbank
  emotion2vec extract --checkpoint hf:facebook/wavlm-base-plus --input manifests/urdu/data.tsv \
      --out features/urdu/wavlm-base-plus --layers all
  emotion2vec extract --checkpoint opensmile:eGeMAPSv02 --input manifests/urdu/data.tsv \
      --out features/urdu/eGeMAPSv02 --granularity utterance
  emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt --input manifests/iemocap/data.tsv \
      --out features/iemocap/emotion2vec_base_tokens --granularity tokens
  emotion2vec extract --checkpoint text:bert-base-uncased --input manifests/iemocap/data.tsv \
      --out features/iemocap/bert-base-uncased
  emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt --input my_wavs/ --out features/x --dtype auto
  emotion2vec extract --checkpoint emotion2vec_base.onnx --backend onnxruntime --input my_wavs/ --out features/y
  torchrun --nproc_per_node 4 -m emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt \
      --input manifests/urdu/data.tsv --out features/urdu/emotion2vec_base --device cuda    (one GPU per process)

sharded: under torchrun every process takes a share of the inputs (whole batches, balanced by seconds of audio),
on its own device (--device cuda = cuda:LOCAL_RANK; CPU processes use gloo), writing into the same --out; process 0
merges index.tsv. The outputs equal those of one process (bitwise on a CPU in fp32 with the same threads per
process). A re-run of the same command finishes what a stopped job left.
"""


#: what the command writes, checked before any work (emotion2vec.io.atomic)
OUTPUTS = {"out": "dir"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EXAMPLES
    p.add_argument("--checkpoint", required=True, help="emotion2vec/data2vec 2.0 or data2vec (v1) fairseq .pt, "
                   "FunASR folder, our converted folder, hf:PATH (a Hugging Face wav2vec 2.0 / HuBERT / WavLM / "
                   "data2vec-audio / Whisper folder or hub name), 'fbank' for the 80-dim log-mel baseline, or "
                   "opensmile:SET[:lld] (eGeMAPSv02, ComParE_2016: functionals = one vector per input; :lld = "
                   "low-level descriptors at 100 Hz), or an ONNX graph of `emotion2vec export` (.onnx), or "
                   "text:PATH (a BERT-style text model: embeds the text column of a data.tsv, one vector per "
                   "utterance)")
    p.add_argument("--input", required=True, nargs="+", help="data.tsv or fairseq .tsv manifest, Kaldi wav.scp, "
                   ".jsonl (key/path), directories (recursive) or audio files")
    p.add_argument("--out", required=True, help="output folder: one .npy per input mirroring its key, index.tsv, "
                   "features.json (convention: features/<corpus>/<source>)")
    p.add_argument("--granularity", choices=GRANULARITIES, default=None,
                   help="frame: (T, D) at 50 Hz; utterance: mean over frames (D,); tokens: the outputs at the "
                   "E utterance-token positions (E, D) of an emotion2vec checkpoint (10 in emotion2vec_base; "
                   "probes average them), inputs run whole (default frame; text:PATH: utterance)")
    p.add_argument("--text-pooling", choices=("mean", "cls"), default=None,
                   help="text:PATH: mean over the tokens (default) or the [CLS] token's vector")
    p.add_argument("--layers", type=layer_list, default="-1",
                   help="-1 (last block, default), all, or comma-separated block "
                   "indices counted from 0 with prenet blocks first (emotion2vec base: 0..11; -2,-1 allowed); "
                   "hf: models count their hidden states (0 = the Transformer's input, base models 0..12)")
    p.add_argument("--device", type=device(), default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", choices=(*DTYPE_NAMES, "auto"), default="float32",
                   help="compute dtype; outputs are always float32. float32 (default) is exact; bfloat16 runs the "
                   "matrix multiplies in bf16 (norms, softmax in fp32); int8 (CPU) also the Transformer's linear "
                   "layers in int8; auto = the fastest measured: bfloat16 where the hardware accelerates it (GPUs "
                   "with bf16; CPUs with AMX; CPUs with AVX512-BF16 alone for models 768 wide and up), else float32")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default=None,
                   help="torch (default), or onnxruntime for a graph of `emotion2vec export` (the default for a "
                   ".onnx --checkpoint; CPU execution provider)")
    p.add_argument("--attention", choices=ATTENTION_IMPLEMENTATIONS, default="sdpa",
                   help="sdpa (fused, default) or eager (explicit fp32 softmax, as the original code)")
    p.add_argument("--max-tokens", type=max_tokens, default=None, help="max padded samples per batch (default: 160,000 "
                   "= 10 s on CPU, where batching buys no speed, and 1,000,000 = 62.5 s on GPU)")
    p.add_argument("--num-workers", type=non_negative_int, default=1,
                   help="decoding processes feeding the model (default 1; "
                   "0 decodes in the main process)")
    p.add_argument("--chunk-seconds", type=positive_float, default=30.0,
                   help="longer inputs run in overlapping windows of "
                   "this length, stitched onto the full frame grid (default 30; at most 30 for Whisper; openSMILE always "
                   "reads whole inputs)")
    p.add_argument("--packed", action="store_true", help="one features.npy (+ features.lengths) in input order, as "
                   "the official downstream recipe expects, instead of one .npy per input")
    p.add_argument("--scores", action="store_true", help="with a classifier model (emotion2vec+): also write its "
                   "class probabilities as p_<label> columns of index.tsv")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist (default: resume, skip them)")
    p.add_argument("--skip-errors", action="store_true", help="exit 0 even if some inputs failed (they are listed "
                   "in index.tsv either way)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects in the "
                   "checkpoint (can run code: only for files you trust)")
    p.add_argument("--preset", type=preset_name, help="architecture preset for a bare state dict without config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_text(args: argparse.Namespace) -> int:
    from ..extract import ExtractionError
    from ..extract.engine import parse_layers
    from ..extract.text import load_text_encoder, read_transcripts, run_text_extraction

    refused = [name for name, used in (("--granularity " + str(args.granularity), args.granularity not in
                                        (None, "utterance")), ("--packed", args.packed), ("--scores", args.scores),
                                       ("--backend " + str(args.backend), args.backend not in (None, "torch")))
               if used]
    if refused:
        raise ExtractionError(f"{', '.join(refused)}: text:PATH gives one vector per utterance (utterance "
                              f"granularity, per-file outputs, no classifier scores, torch backend)")
    transcripts = read_transcripts(args.input)  # the inputs first: loading a hub model may reach the network
    encoder = load_text_encoder(args.checkpoint, args.device, args.dtype, args.text_pooling or "mean")
    layers = parse_layers(args.layers, encoder.num_layers)
    result = run_text_extraction(args.input, args.out, encoder, layers, overwrite=args.overwrite,
                                 checkpoint_name=args.checkpoint, log=lambda m: print(m, file=sys.stderr),
                                 transcripts=transcripts)
    return 1 if result.failed and not args.skip_errors else 0


def check_out_outside_inputs(inputs: list[str], out: str) -> None:
    """Refuse an --out inside the corpus being read: inside a folder given as --input, or the folder (or a parent
    of the folder) of recordings named by a list or given as files, where the .npy files, which mirror the keys,
    would land among the recordings."""
    from pathlib import Path

    from ..extract import ExtractionError
    from ..extract.inputs import LIST_SUFFIXES
    from ..io.manifests import ManifestError, read_audio_list

    target = Path(out).resolve()
    folders: set[Path] = set()
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            root = p.resolve()
            if target == root or root in target.parents:
                raise ExtractionError(f"--out {out} lies inside the input folder {raw}: the features would be "
                                      f"written into the corpus; give a folder outside it (e.g. "
                                      f"features/<corpus>/<source>)")
        elif p.suffix in LIST_SUFFIXES or p.name == "wav.scp":
            try:
                folders.update(Path(e.path).resolve().parent for e in read_audio_list(p))
            except ManifestError:
                continue  # said by the extraction itself, which reads the list again
        elif p.exists():
            folders.add(p.resolve().parent)
    among = sorted(f for f in folders if f == target or target in f.parents)
    if among:
        raise ExtractionError(f"--out {out} holds recordings it would extract ({among[0]}"
                              + (f" and {len(among) - 1} more folder(s)" if len(among) > 1 else "")
                              + "): the features would be written among them; give a folder outside the corpus "
                                "(e.g. features/<corpus>/<source>)")


def run(args: argparse.Namespace) -> int:
    from ..distributed import join
    from ..extract import ExtractionError

    check_out_outside_inputs(args.input, args.out)
    if args.checkpoint.startswith("text:"):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ExtractionError("text:PATH embeds transcripts in one process: run it without torchrun")
        return _run_text(args)
    if args.text_pooling is not None:
        raise ExtractionError(f"--text-pooling {args.text_pooling} pools the tokens of a text model "
                              f"(--checkpoint text:PATH); {args.checkpoint} gives audio features")
    args.granularity = args.granularity or "frame"
    processes, device = join(args.device)
    try:
        return _run_audio(args, processes, device)
    finally:
        processes.close()


def _run_audio(args: argparse.Namespace, processes, device) -> int:
    from ..extract.backends import load_backend
    from ..extract.engine import parse_layers
    from ..extract.run import run_extraction

    backend = load_backend(args.checkpoint, device, args.dtype, args.trust_checkpoint, args.preset,
                           attention=args.attention, backend=args.backend)
    layers = parse_layers(args.layers, backend.num_layers)
    recognizer = None
    if args.scores:
        from ..recognize import RecognitionError
        from ..recognize.recognizer import Recognizer

        spec = getattr(backend, "classifier", None)
        if spec is None:
            raise RecognitionError(f"--scores: {args.checkpoint} has no classification head")
        recognizer = Recognizer.from_spec(spec, backend.num_layers, backend.dim, args.checkpoint).to(backend.device)
    result = run_extraction(args.input, args.out, backend, layers, args.granularity, args.max_tokens,
                            args.num_workers, args.chunk_seconds, args.packed, args.overwrite,
                            checkpoint_name=args.checkpoint, progress=not args.quiet,
                            log=lambda m: print(m, file=sys.stderr), recognizer=recognizer, processes=processes)
    return 1 if result.failed and not args.skip_errors and processes.main else 0
