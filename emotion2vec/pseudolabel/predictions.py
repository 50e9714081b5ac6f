"""Every model over every input: the window predictions the data engine combines, kept on disk and resumable.

A model's predictions are one table, ``predictions/<name>.tsv`` in the run folder::

    key  start  end  p_<label>...  status

one row per window of each input (an input no longer than the window is one window: its utterance prediction),
``status`` ``ok`` or ``error: <reason>`` (an unreadable input: one row, no window). Windows follow
:func:`emotion2vec.recognize.run.window_bounds`: equal windows every ``hop`` seconds, the last one ending at the end
of the recording. Probabilities are those of the model's labels in English (``unuse*`` rows left out).

The inputs are done in chunks of :data:`CHUNK_FILES` files, each predicted by every process of the job (whole
batches dealt by seconds of audio, :func:`emotion2vec.recognize.run.predict`) and written by process 0 as
``predictions/<name>.parts/<chunk>.tsv``; a re-run skips the chunks that exist, so a stopped job loses at most one
chunk. When every chunk is there, they are joined into the table and the parts removed.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..distributed import Processes
from ..extract.inputs import Item
from ..io.atomic import atomic_write_text
from . import PseudoLabelError

__all__ = ["CHUNK_FILES", "ModelPredictions", "model_names", "table_text", "read_table", "predict_model",
           "remove_tables"]

#: files per resumable chunk of a model's predictions
CHUNK_FILES = 1000


@dataclass
class ModelPredictions:
    """One model's predictions: per key its windows ``(start s, end s, probabilities over labels)``, or an error."""

    name: str
    labels: list[str]
    windows: dict[str, list[tuple[float, float, np.ndarray]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def model_names(models: Sequence[str]) -> list[str]:
    """A folder-safe, unique name per model: ``<position>-<last part of its path>`` (``1-fold1``)."""
    out = []
    for i, m in enumerate(models, start=1):
        stem = Path(str(m).rstrip("/")).name or "model"
        stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", Path(stem).stem if stem.endswith((".pt", ".safetensors")) else stem)
        out.append(f"{i}-{stem}")
    return out


def table_text(predictions, labels: Sequence[str], shown: Sequence[int], header: bool = True) -> str:
    """The rows of ``predictions`` (:class:`~emotion2vec.recognize.run.Prediction`, windows set) as table text."""
    lines = ["\t".join(["key", "start", "end", *(f"p_{name}" for name in labels), "status"])] if header else []
    for p in predictions:
        if p.error is not None:
            lines.append("\t".join([p.key, "", "", *([""] * len(shown)), f"error: {p.error}"]))
        else:
            lines.append("\t".join([p.key, f"{p.start:.3f}", f"{p.end:.3f}",
                                    *(f"{p.probabilities[i]:.6f}" for i in shown), "ok"]))
    return "\n".join(lines) + "\n"


def read_table(path: Path, name: str) -> ModelPredictions:
    """A table written by :func:`predict_model`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PseudoLabelError(f"{path}: cannot read ({e}); remove it to predict again") from None
    header = lines[0].split("\t") if lines else []
    if len(header) < 4 or header[:3] != ["key", "start", "end"] or header[-1] != "status":
        raise PseudoLabelError(f"{path}: not a predictions table (header {header[:3]}...); remove it to predict again")
    labels = [c[2:] for c in header[3:-1]]
    table = ModelPredictions(name, labels)
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise PseudoLabelError(f"{path}:{n}: expected {len(header)} columns, got {len(cells)}")
        key, status = cells[0], cells[-1]
        if status != "ok":
            table.errors[key] = status.removeprefix("error: ")
            continue
        try:
            start, end = float(cells[1]), float(cells[2])
            probs = np.array([float(v) for v in cells[3:-1]])
        except ValueError:
            raise PseudoLabelError(f"{path}:{n}: a value is not a number") from None
        table.windows.setdefault(key, []).append((start, end, probs))
    return table


def _chunks(items: Sequence[Item]) -> list[list[Item]]:
    return [list(items[i:i + CHUNK_FILES]) for i in range(0, len(items), CHUNK_FILES)]


def predict_model(model: str, name: str, items: list[Item], folder: Path, load: Callable, window: float,
                  hop: float, num_workers: int, progress: bool, processes: Processes, log,
                  table_name: str | None = None) -> ModelPredictions | None:
    """``model``'s window predictions for ``items`` in ``folder/<table_name or name>.tsv``: read when it is there,
    else computed chunk by chunk (see the module docstring). ``load()`` -> (engine, recognizer) loads the model (only
    when a chunk is left to do). Every process of the job calls this; process 0 returns the table, the others None.
    """
    from ..recognize.run import predict

    table = folder / f"{table_name or name}.tsv"
    parts = folder / f"{table_name or name}.parts"
    chunks = _chunks(items)

    def todo() -> list[int]:
        if table.exists():
            return []
        return [c for c in range(len(chunks)) if not (parts / f"{c:05d}.tsv").exists()]

    left: list[int] = processes.on_main(todo)
    if left:
        engine, recognizer = load()
        labels = recognizer.display_labels
        if processes.main:
            done = len(chunks) - len(left)
            log(f"{name}: predicting {sum(len(chunks[c]) for c in left)} file(s)"
                + (" of the dev set" if table_name else "")
                + (f" ({done} of {len(chunks)} chunks done earlier)" if done else "")
                + (f" with {processes.world_size} processes" if processes.sharded else ""))
        for c in left:
            predictions = predict(engine, recognizer, chunks[c], window, hop, num_workers, progress, processes)
            if processes.main:
                atomic_write_text(parts / f"{c:05d}.tsv", table_text(predictions, labels, recognizer.shown))
        del engine, recognizer
    if not processes.main:
        return None
    if not table.exists():
        texts = [(parts / f"{c:05d}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
                 for c in range(len(chunks))]
        atomic_write_text(table, "".join(texts[0][:1] + [line for t in texts for line in t[1:]]))
        shutil.rmtree(parts, ignore_errors=True)
    return read_table(table, name)


def remove_tables(folder: Path, table_name: str) -> None:
    """Forget a table and its parts (its inputs changed)."""
    (folder / f"{table_name}.tsv").unlink(missing_ok=True)
    shutil.rmtree(folder / f"{table_name}.parts", ignore_errors=True)

