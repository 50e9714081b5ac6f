"""``emotion2vec extract``: a resumable run that writes one ``.npy`` per input (or one packed array).

The run, step by step (:func:`run_extraction`):
    1. discover the inputs (:mod:`.inputs`)
    2. record the settings in ``features.json``; a folder made with other settings is refused, naming each setting
       that differs with both values (``--overwrite`` redoes it)
    3. skip inputs whose ``.npy`` exists (resume), read the others' lengths from their headers
    4. decode in worker processes, batch by length, forward, write each ``.npy`` atomically
    5. write ``index.tsv`` (every input, with its status) and, with ``--packed``, ``features.npy``
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..io.atomic import atomic_save_npy, atomic_write_text
from ..io.audio import SAMPLE_RATE
from . import GRANULARITIES, SEQUENCE_GRANULARITIES, ExtractionError
from .backends import Backend, token_backend
from .engine import BatchedForward, plan_batches, pool
from .inputs import Item, decoded_batches, discover_inputs, probe_lengths
from .store import FEATURES_FORMAT, FEATURES_VERSION, INDEX_COLUMNS, FeatureStore

__all__ = ["ExtractionResult", "run_extraction", "checkpoint_stamp", "SETTINGS"]

#: features.json fields that must agree for a resume to add to a folder
SETTINGS = ("checkpoint", "checkpoint_stamp", "backend", "dtype", "attention", "granularity", "layers", "dim",
            "chunk_seconds", "packed", "scores", "text_pooling")


@dataclass
class ExtractionResult:
    total: int
    extracted: int
    skipped: int  # finished by an earlier run
    failed: list[tuple[str, str, str]]  # (key, path, reason)
    audio_seconds: float
    seconds: float
    out: Path
    notes: list[str] = field(default_factory=list)


def checkpoint_stamp(checkpoint: str) -> str:
    """Size and modification time of the checkpoint's weights: a re-trained file at the same path is noticed."""
    p = Path(checkpoint[len("cnn14:"):] if checkpoint.startswith("cnn14:") else checkpoint)
    if p.is_dir():
        p = next((p / n for n in ("model.safetensors", "model.pt") if (p / n).exists()), p)
    try:
        st = p.stat()
    except OSError:
        return ""
    return f"{st.st_size}-{st.st_mtime_ns}"


def _write_if_changed(path: Path, text: str) -> None:
    """Atomic write, skipped when the file already holds ``text`` (a resumed run that had nothing to do touches
    nothing)."""
    try:
        if path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, text)


# ------------------------------------------------------------------------------------------------ step 2: settings
def _settings(backend: Backend, checkpoint: str, granularity: str, layers: list[int], packed: bool,
              chunk_seconds: float) -> dict[str, Any]:
    meta = {"format": FEATURES_FORMAT, "version": FEATURES_VERSION, "checkpoint": checkpoint,
            "checkpoint_stamp": checkpoint_stamp(checkpoint), "model": backend.description,
            "granularity": granularity, "layers": layers, "dim": backend.dim, "frame_rate": backend.frame_rate,
            "packed": packed, "chunk_seconds": float(chunk_seconds), "normalize": backend.normalize,
            "sample_rate": SAMPLE_RATE, "num_layers": backend.num_layers}
    meta.update(backend.settings())
    meta.setdefault("dtype", "float32")
    meta.setdefault("attention", None)
    return meta


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    if old.get("format") != FEATURES_FORMAT:
        return [f"format is {old.get('format')!r}, not {FEATURES_FORMAT!r}"]
    if int(old.get("version", 1)) < FEATURES_VERSION:
        return [f"it was written by an older emotion2vec (features.json version {old.get('version', 1)}) that did "
                f"not record the compute dtype, attention and chunk length"]
    return [f"{k} is {old.get(k)!r} there, {new.get(k)!r} now" for k in SETTINGS if old.get(k) != new.get(k)]


def _open_output(out: Path, meta: dict[str, Any], items: list[Item], overwrite: bool, log) -> bool:
    """Create or check the output folder. Returns True when a packed output already covers every input."""
    meta_path = out / "features.json"
    if meta_path.exists() and not overwrite:
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            old = {}
        diffs = _differences(old, meta)
        if diffs:
            raise ExtractionError(f"{out} holds features made with other settings: " + "; ".join(diffs)
                                  + ". Use --overwrite to redo them, or another --out.")
        if meta["packed"] and (out / "features.npy").exists():
            done = FeatureStore(out)
            if all(it.key in done for it in items):
                log(f"{out}: all {len(items)} inputs already extracted (packed); nothing to do")
                return True
            raise ExtractionError(f"{out}: a packed output exists and does not cover every input; use --overwrite")
    if overwrite and out.exists():
        for name in ("features.json", "index.tsv", "features.npy", "features.lengths"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_if_changed(meta_path, json.dumps(meta, indent=2) + "\n")
    return False


# ------------------------------------------------------------------------------------------------ step 4: compute
def _compute(items: list[Item], engine: BatchedForward, npy_path: Callable[[Item], Path], granularity: str,
             num_workers: int, progress: bool, layers: list[int], recognizer=None,
             scores: dict[str, np.ndarray] | None = None) -> tuple[dict[str, int], float]:
    """Extract every readable item and write the .npy of ``layers``; decoding errors are stored on the item. With a
    ``recognizer`` (whose layer the engine also computes), its class probabilities go into ``scores`` by key.
    -> ({key: frames}, seconds of audio done)."""
    from tqdm import tqdm

    backend = engine.backend
    batches = plan_batches([it.num_samples for it in items], engine.max_tokens, engine.chunk_samples)
    loader = decoded_batches(items, batches, backend.normalize, num_workers)
    frames: dict[str, int] = {}
    total_audio = sum(it.num_samples for it in items) / SAMPLE_RATE
    bar = tqdm(total=len(items), unit="file", disable=None if progress else True, dynamic_ncols=True,
               file=sys.stderr)  # None: shown on a terminal only
    done_audio, t0 = 0.0, time.perf_counter()
    single = len(layers) == 1
    keep = [engine.layers.index(layer) for layer in layers]
    for samples in loader:
        ok = [(i, w) for i, w, err in samples if err is None]
        for i, _, err in samples:
            if err is not None:
                items[i].error = err
        if ok:
            outs = engine([w for _, w in ok])
            if recognizer is not None:
                row = engine.layers.index(recognizer.layer)
                for (i, _), p in zip(ok, recognizer.probabilities([f[row] for f in outs])):
                    scores[items[i].key] = p
            for (i, w), feats in zip(ok, outs):
                it = items[i]
                atomic_save_npy(npy_path(it), pool(feats[keep], granularity, single))
                frames[it.key] = feats.shape[1]
                done_audio += len(w) / SAMPLE_RATE
        bar.update(len(samples))
        elapsed = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"{done_audio / 3600:.3f}/{total_audio / 3600:.3f} h audio, "
                            f"{done_audio / elapsed:.1f}x realtime")
    bar.close()
    return frames, done_audio


# ------------------------------------------------------------------------------------------------ step 5: index
def _index_rows(out: Path, items: list[Item], frames: dict[str, int], npy_path: Callable[[Item], Path],
                granularity: str, packed: bool, scores: dict[str, np.ndarray] | None = None,
                shown: list[int] | None = None) -> tuple[list[list[str]], int]:
    rows, offset = [], 0
    sequence = granularity in SEQUENCE_GRANULARITIES  # (T, D) or (E, D) per layer, else one vector
    for it in items:
        if it.error is not None:
            rows.append([it.key, it.path, "0", f"error: {it.error}", "", ""] + [""] * len(shown or []))
            continue
        path = npy_path(it)
        if it.key not in frames:  # finished in an earlier run: read the frame count from the .npy header
            arr = np.load(path, mmap_mode="r")
            frames[it.key] = arr.shape[-2] if sequence else 1
        n = frames[it.key] if sequence else 1
        if packed:
            rows.append([it.key, it.path, str(n), "ok", "features.npy", str(offset)])
            offset += n
        else:
            rows.append([it.key, it.path, str(n), "ok", path.relative_to(out).as_posix(), ""])
        if scores is not None:
            rows[-1] += [f"{scores[it.key][i]:.6f}" for i in shown]
    return rows, offset


def _previous_scores(index: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Class probabilities an earlier run wrote into index.tsv (its p_<label> columns), by key."""
    from .store import read_index

    if not index.exists():
        return {}
    out = {}
    for row in read_index(index):
        values = [row.get(f"p_{n}", "") for n in names]
        if row.get("status") == "ok" and all(values):
            out[row["key"]] = np.array([float(v) for v in values])
    return out


def _pack(out: Path, parts: Path, items: list[Item], total: int, layers: list[int], dim: int,
          granularity: str) -> None:
    """Concatenate the per-file parts into features.npy (+ features.lengths), atomically, then drop the parts."""
    shape: tuple[int, ...] = (total, dim) if len(layers) == 1 else (total, len(layers), dim)
    tmp = out / ".features.npy.tmp"
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    lengths, offset = [], 0
    for it in items:
        x = np.load(parts / f"{it.key}.npy")
        if granularity == "utterance":
            x = x[None]  # (1, D) or (1, L, D)
        elif len(layers) > 1:
            x = np.moveaxis(x, 0, 1)  # (L, T, D) -> (T, L, D)
        arr[offset:offset + len(x)] = x
        lengths.append(len(x))
        offset += len(x)
    arr.flush()
    del arr
    os.replace(tmp, out / "features.npy")
    atomic_write_text(out / "features.lengths", "".join(f"{n}\n" for n in lengths))
    shutil.rmtree(parts, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the run
def run_extraction(inputs: Sequence[str], out_dir: str | os.PathLike, backend: Backend, layers: list[int],
                   granularity: str = "frame", max_tokens: int | None = None, num_workers: int = 0,
                   chunk_seconds: float = 30.0, packed: bool = False, overwrite: bool = False,
                   checkpoint_name: str = "", progress: bool = True, log=None, recognizer=None) -> ExtractionResult:
    """Extract features for ``inputs`` into ``out_dir`` (see the module docstring for the steps).

    ``recognizer`` (a model's classification head, :class:`~emotion2vec.recognize.recognizer.Recognizer`): its class
    probabilities are written beside the features, as ``p_<label>`` columns of index.tsv.
    ``granularity`` ``tokens``: the outputs at the utterance-token positions, (E, D) per input and layer
    (:class:`~.backends.UtteranceTokenBackend`).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if granularity not in GRANULARITIES:
        raise ExtractionError(f"--granularity {granularity!r}: choose {', '.join(GRANULARITIES)}")
    if granularity == "tokens":
        if recognizer is not None:
            raise ExtractionError("--scores reads the frames of the classifier's layer: it does not go with "
                                  "--granularity tokens")
        backend = token_backend(backend, checkpoint_name)
    out = Path(out_dir)
    t0 = time.perf_counter()
    items = discover_inputs(inputs)                                                           # 1
    computed = layers + ([recognizer.layer] if recognizer is not None and recognizer.layer not in layers else [])
    engine = BatchedForward(backend, computed, max_tokens, chunk_seconds)
    meta = _settings(backend, checkpoint_name, granularity, layers, packed, chunk_seconds)  # 2
    meta["scores"] = recognizer.display_labels if recognizer is not None else None
    if _open_output(out, meta, items, overwrite, log):
        return ExtractionResult(len(items), 0, len(items), [], 0.0, 0.0, out)
    parts = out / ".parts" if packed else out

    def npy_path(it: Item) -> Path:
        return parts / f"{it.key}.npy"

    names = recognizer.display_labels if recognizer is not None else []
    scores = None if recognizer is None else ({} if overwrite else _previous_scores(out / "index.tsv", names))
    todo = [it for it in items if overwrite or not npy_path(it).exists()                      # 3
            or (scores is not None and it.key not in scores)]
    skipped = len(items) - len(todo)
    if skipped:
        log(f"resuming: {skipped} of {len(items)} outputs already exist in {out} (use --overwrite to redo them)")
    probe_lengths(todo)
    frames, done_audio = _compute([it for it in todo if it.error is None], engine, npy_path, granularity,
                                  num_workers, progress, layers, recognizer, scores)         # 4
    failed = [(it.key, it.path, it.error) for it in todo if it.error is not None]
    for _, path, reason in failed:
        log(f"error: {path}: {reason}")
    extracted = len(frames)
    rows, total_frames = _index_rows(out, items, frames, npy_path, granularity, packed,     # 5
                                     scores, recognizer.shown if recognizer is not None else None)
    if packed:
        _pack(out, parts, [it for it in items if it.error is None], total_frames, layers, backend.dim, granularity)
    header = list(INDEX_COLUMNS) + [f"p_{n}" for n in names]
    _write_if_changed(out / "index.tsv", "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    result = ExtractionResult(len(items), extracted, skipped, failed, done_audio, time.perf_counter() - t0, out)
    log(f"extracted {extracted} file(s) ({done_audio / 60:.1f} min of audio) in {result.seconds:.1f} s; "
        f"{skipped} already done; {len(failed)} failed -> {out / 'index.tsv'}")
    return result
