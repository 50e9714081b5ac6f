"""Text features: each utterance's transcript embedded by a BERT-style model (``--checkpoint text:PATH``).

``emotion2vec extract --checkpoint text:PATH --input manifests/<corpus>/data.tsv --out features/<corpus>/<name>``
reads the ``text`` column of a ``data.tsv`` (written by ``emotion2vec prepare`` for MELD, CMU-MOSI / MOSEI,
CREMA-D, and IEMOCAP / MSP-Podcast where their transcripts are present), runs a Hugging Face text encoder
(``PATH``: a ``save_pretrained`` folder or a hub name that ``AutoModel`` / ``AutoTokenizer`` load; the ``hf``
extra) and writes one vector per utterance into the same feature-folder format as the speech extractors
(:mod:`.store`: ``<key>.npy`` (D,) or (L, D), ``index.tsv``, ``features.json``), so probes, the conversation task
and fine-tuning take it like any other source, alone or concatenated to speech features.

* Layers are the model's hidden states: 0 the embeddings, i the output of block i, -1 the last (a 12-block BERT has
  13, 0..12), as for ``hf:`` speech models.
* Pooling (``--text-pooling``): ``mean`` over the tokens the attention mask keeps ([CLS] and [SEP] included), or
  ``cls`` (the first token's vector).
* Texts longer than the model's window are cut to it (counted in the log).
* An utterance whose transcript is empty is listed in ``index.tsv`` (``error: no transcript ...``) and on stderr;
  the others are extracted (exit status 1 unless ``--skip-errors``). A re-run resumes; a folder made with another
  model, layer set or pooling is refused, as for speech features.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..io.atomic import atomic_save_npy
from . import ExtractionError
from .backends import _dtype_name, resolve_dtype
from .inputs import Item
from .run import ExtractionResult, _index_rows, _open_output, _write_index, checkpoint_stamp
from .store import FEATURES_FORMAT, FEATURES_VERSION, INDEX_COLUMNS

__all__ = ["TEXT_PREFIX", "TEXT_POOLINGS", "TextEncoder", "load_text_encoder", "read_transcripts",
           "run_text_extraction"]

TEXT_PREFIX = "text:"
TEXT_POOLINGS = ("mean", "cls")
NO_TRANSCRIPT = "no transcript (the text column is empty for this utterance)"


class TextEncoder:
    """A transformers text model and its tokenizer: transcripts -> per-layer utterance vectors (L, D)."""

    name = "text"

    def __init__(self, model, tokenizer, path: str, device: torch.device, dtype: torch.dtype, pooling: str):
        if pooling not in TEXT_POOLINGS:
            raise ExtractionError(f"--text-pooling {pooling!r}: choose {', '.join(TEXT_POOLINGS)}")
        self.model, self.tokenizer, self.path = model.eval().to(device), tokenizer, path
        self.device, self.dtype, self.pooling = device, dtype, pooling
        config = model.config
        self.num_layers = int(config.num_hidden_layers) + 1  # hidden states: embeddings + every block
        self.dim = int(config.hidden_size)
        limits = [v for v in (getattr(tokenizer, "model_max_length", None),
                              getattr(config, "max_position_embeddings", None)) if v and v < 1_000_000]
        self.max_length = int(min(limits)) if limits else 512
        self.description = f"{TEXT_PREFIX}{path} ({type(model).__name__})"

    def __call__(self, texts: Sequence[str], layers: Sequence[int]) -> tuple[np.ndarray, int]:
        """-> ((B, L, D) float32 pooled vectors of ``layers``, how many texts were cut to the window)."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        full = self.tokenizer(list(texts), truncation=False)["input_ids"]
        cut = sum(len(ids) > self.max_length for ids in full)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        autocast = self.dtype != torch.float32
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            hidden = self.model(**enc, output_hidden_states=True).hidden_states
        mask = enc["attention_mask"].float()[..., None]  # (B, S, 1)
        pooled = []
        for i in layers:
            h = hidden[i].float()
            pooled.append(h[:, 0] if self.pooling == "cls" else (h * mask).sum(1) / mask.sum(1).clamp(min=1))
        return torch.stack(pooled, dim=1).cpu().numpy(), cut

    def settings(self) -> dict[str, Any]:
        from ..models.hf import _weights_stamp
        import transformers

        return {"backend": self.name, "dtype": _dtype_name(self.dtype), "attention": None,
                "text_pooling": self.pooling, "text_class": type(self.model).__name__,
                "max_length": self.max_length,
                "checkpoint_stamp": f"{_weights_stamp(self.path, self.model.config)}; transformers "
                                    f"{transformers.__version__}"}


def load_text_encoder(spec: str, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                      pooling: str = "mean") -> TextEncoder:
    """``text:PATH`` (or PATH) -> :class:`TextEncoder` in eval mode. PATH: a ``save_pretrained`` folder holding a
    text encoder and its tokenizer, or a hub name transformers resolves from its cache."""
    path = spec[len(TEXT_PREFIX):] if spec.startswith(TEXT_PREFIX) else spec
    if not path:
        raise ExtractionError("--checkpoint text:PATH needs a path (a save_pretrained folder or a hub name)")
    try:
        import transformers
    except ImportError:
        raise ExtractionError("text: models need the transformers library: pip install 'emotion2vec[hf]'") from None
    looks_local = path.startswith((".", "/", "~")) or Path(path).exists()
    if looks_local:
        path = str(Path(path).expanduser())
        if not (Path(path) / "config.json").is_file():
            raise ExtractionError(f"text:{path}: no config.json there (expected a folder written by save_pretrained)")
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        config = transformers.AutoConfig.from_pretrained(path)
        if getattr(config, "is_encoder_decoder", False) or not hasattr(config, "num_hidden_layers"):
            raise ExtractionError(f"text:{path} is a {type(config).__name__}: a text encoder (BERT, RoBERTa, ...) "
                                  f"with num_hidden_layers and hidden_size is expected")
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModel.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        raise ExtractionError(f"text:{path}: transformers cannot load it: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExtractionError("--device cuda requested but CUDA is not available")
    return TextEncoder(model.float(), tokenizer, path, device, resolve_dtype(dtype, device), pooling)


def read_transcripts(inputs: Sequence[str | os.PathLike]) -> tuple[list[Item], dict[str, str]]:
    """The utterances of one ``data.tsv`` (with a ``text`` column) -> (items: key, audio path, error when the
    transcript is empty; {key: text})."""
    from ..io.manifests import ManifestError, read_data_tsv

    if len(inputs) != 1:
        raise ExtractionError(f"text features read one data.tsv (its text column); got {len(inputs)} inputs")
    path = Path(inputs[0])
    if path.is_dir():
        path = path / "data.tsv"
    try:
        rows = read_data_tsv(path)
    except ManifestError as e:
        raise ExtractionError(str(e)) from None
    if rows and "text" not in rows[0]:
        raise ExtractionError(f"{path}: no text column: text features need the corpus's transcripts (`emotion2vec "
                              f"prepare` writes them for MELD, MOSI / MOSEI, CREMA-D, and IEMOCAP / MSP-Podcast when "
                              f"their transcript folders are present)")
    items, texts = [], {}
    for r in rows:
        text = str(r.get("text") or "").strip()
        items.append(Item(r["key"], r["path"], error=None if text else NO_TRANSCRIPT))
        texts[r["key"]] = text
    if not items:
        raise ExtractionError(f"{path}: no rows")
    return items, texts


def run_text_extraction(inputs: Sequence[str], out_dir: str | os.PathLike, encoder: TextEncoder, layers: list[int],
                        batch_size: int = 32, overwrite: bool = False, checkpoint_name: str = "",
                        log=None, transcripts: tuple[list[Item], dict[str, str]] | None = None) -> ExtractionResult:
    """Embed the transcripts of ``inputs`` (one data.tsv) into ``out_dir``: per utterance (D,) or (L, D).
    ``transcripts``: what :func:`read_transcripts` returned for ``inputs``, when the caller checked them first."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if batch_size < 1:
        raise ExtractionError(f"batch size must be positive, got {batch_size}")
    out = Path(out_dir)
    t0 = time.perf_counter()
    items, texts = transcripts or read_transcripts(inputs)
    path = checkpoint_name[len(TEXT_PREFIX):] if checkpoint_name.startswith(TEXT_PREFIX) else checkpoint_name
    meta = {"format": FEATURES_FORMAT, "version": FEATURES_VERSION, "checkpoint": checkpoint_name,
            "checkpoint_stamp": checkpoint_stamp(path), "model": encoder.description, "granularity": "utterance",
            "layers": layers, "dim": encoder.dim, "frame_rate": None, "packed": False, "chunk_seconds": 0.0,
            "normalize": False, "sample_rate": None, "num_layers": encoder.num_layers, "scores": None,
            "source": "text"}
    meta.update(encoder.settings())
    folder = _open_output(out, meta, items, overwrite, log)

    def npy_path(it: Item) -> Path:
        return out / f"{it.key}.npy"

    todo = [it for it in items if it.error is None and (overwrite or not npy_path(it).exists())]
    skipped = sum(it.error is None for it in items) - len(todo)
    if skipped:
        log(f"resuming: {skipped} of {len(items)} outputs already exist in {out} (use --overwrite to redo them)")
    todo.sort(key=lambda it: len(texts[it.key]))
    done: dict[str, int] = {}
    cut = 0
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        vectors, n_cut = encoder([texts[it.key] for it in batch], layers)
        cut += n_cut
        for it, v in zip(batch, vectors):
            atomic_save_npy(npy_path(it), v[0] if len(layers) == 1 else v)
            done[it.key] = 1
    failed = [(it.key, it.path, it.error) for it in items if it.error is not None]
    for key, _, reason in failed:
        log(f"error: {key}: {reason}")
    if cut:
        log(f"note: {cut} transcript(s) longer than the model's {encoder.max_length} tokens were cut to it")
    for key, _, _ in failed:
        npy_path(Item(key, "")).unlink(missing_ok=True)  # an input that fails has no output
    rows, _ = _index_rows(out, items, done, npy_path, "utterance", False)
    _write_index(out, list(INDEX_COLUMNS), rows, folder.order, folder.carried)
    result = ExtractionResult(len(items), len(done), skipped, failed, 0.0, time.perf_counter() - t0, out)
    log(f"embedded {len(done)} transcript(s) in {result.seconds:.1f} s; {skipped} already done; {len(failed)} "
        f"without a transcript -> {out / 'index.tsv'}")
    return result
