"""``emotion2vec predict``: which emotion each file (or each window of a long recording) carries.

Inputs are anything ``emotion2vec extract`` reads (files, folders, data.tsv / fairseq .tsv, wav.scp, .jsonl).
Files are decoded in worker processes, batched by length through the extraction engine, and scored by the model's
classification head. With ``window`` (seconds) every file is cut into windows of that length starting every
``hop`` seconds (default: ``window``), the last one aligned to the end of the file, so that every window has the
same length and the whole file is covered; a file shorter than one window is one window. Each input or window is
normalised on its own, as a separate utterance would be.

A regression head (a model fine-tuned with ``--task regression``) gives the predicted value of each target instead
of a label and probabilities: TSV columns ``key [start end] <target>... status path``, JSONL ``values``.
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..distributed import Processes, balanced_shards, stop_on_sigterm
from ..extract.engine import BatchedForward, plan_batches
from ..extract.inputs import Item, decoded_batches, discover_inputs, probe_lengths
from ..io.atomic import atomic_write_bytes, atomic_write_text
from ..io.audio import MIN_SAMPLES, SAMPLE_RATE
from . import RecognitionError
from .recognizer import Recognizer, display_label

__all__ = ["Prediction", "load_recognition", "window_bounds", "check_window", "predict", "predictions_tsv",
           "prediction_row", "predictions_jsonl", "timeline_png", "write_outputs"]


@dataclass
class Prediction:
    """One input, or one window of it (``start`` / ``end`` in seconds); ``probabilities`` over the head's labels
    (a regression head's predicted values)."""

    key: str
    path: str
    start: float | None = None
    end: float | None = None
    probabilities: np.ndarray | None = None
    error: str | None = None


def load_recognition(model: str, device, dtype: str = "float32", attention: str = "sdpa",
                     max_tokens: int | None = None, chunk_seconds: float = 30.0,
                     trust: bool = False) -> tuple[BatchedForward, Recognizer]:
    """A classifier model (emotion2vec+, or one exported by ``emotion2vec finetune``) on ``device``: the engine
    that computes its head's layer and the recogniser. A model without a head is refused by name."""
    from ..extract.backends import ModelBackend, resolve_dtype
    from ..models.upstream import load_upstream

    upstream, ckpt = load_upstream(model, trust=trust)
    if ckpt.classifier is None:
        raise RecognitionError(f"{model}: no classification head in this checkpoint (it gives features: "
                               f"`emotion2vec extract`); use an emotion2vec+ model or one from `emotion2vec finetune`")
    recognizer = Recognizer.from_spec(ckpt.classifier, upstream.cfg.num_layers, upstream.cfg.embed_dim, model)
    upstream.set_attention_implementation(attention)
    backend = ModelBackend(upstream, device, resolve_dtype(dtype, device, upstream.cfg.embed_dim), description=model)
    engine = BatchedForward(backend, [recognizer.layer], max_tokens, chunk_seconds)
    return engine, recognizer.to(device)


def window_bounds(num_samples: int, window: float, hop: float | None = None) -> list[tuple[int, int]]:
    """[(first sample, end sample)] of equal windows every ``hop`` seconds, the last aligned to the end."""
    w = int(round(window * SAMPLE_RATE))
    h = int(round((hop or window) * SAMPLE_RATE))
    if num_samples <= w:
        return [(0, num_samples)]
    starts = list(range(0, num_samples - w + 1, h))
    if starts[-1] + w < num_samples:
        starts.append(num_samples - w)
    return [(s, s + w) for s in starts]


def check_window(window: float | None, hop: float | None) -> None:
    if window is None:
        if hop is not None:
            raise RecognitionError("--hop needs --window")
        return
    if window * SAMPLE_RATE < MIN_SAMPLES:
        raise RecognitionError(f"--window {window}: must be at least {MIN_SAMPLES / SAMPLE_RATE} s")
    if hop is not None and not 0 < hop <= window:
        raise RecognitionError(f"--hop {hop}: must be positive and at most --window {window} (a larger hop would "
                               f"leave parts of the recording unlabelled)")


def _plan(inputs: Sequence[str] | Sequence[Item], engine: BatchedForward, world_size: int):
    """(every input, the readable ones, their length-sorted batches, the batches each process takes)."""
    if inputs and all(isinstance(it, Item) for it in inputs):
        items = [Item(it.key, it.path, it.channel) for it in inputs]
    else:
        items = discover_inputs(inputs)
    probe_lengths(items)
    readable = [it for it in items if it.error is None]
    batches = plan_batches([it.num_samples for it in readable], engine.max_tokens, engine.chunk_samples)
    shards = balanced_shards([sum(readable[i].num_samples for i in b) for b in batches], world_size)
    return items, readable, batches, shards


def predict(engine: BatchedForward, recognizer: Recognizer, inputs: Sequence[str] | Sequence[Item],
            window: float | None = None,
            hop: float | None = None, num_workers: int = 0, progress: bool = True,
            processes: Processes | None = None) -> list[Prediction]:
    """Predictions for every input (every window with ``window``), in input order; unreadable files get ``error``.
    ``inputs``: what :func:`~emotion2vec.extract.inputs.discover_inputs` reads, or the items it gave.

    ``engine`` must compute the recogniser's layer (``engine.layers == [recognizer.layer]``). ``processes``: this
    process's place in a sharded job (:func:`emotion2vec.distributed.join`): process 0 plans, every process predicts
    whole batches of the plan (balanced by seconds of audio), and process 0 returns every prediction (the others
    return an empty list).
    """
    from tqdm import tqdm

    processes = processes or Processes()
    check_window(window, hop)
    if engine.layers != [recognizer.layer]:
        raise RecognitionError(f"the engine computes layers {engine.layers}, the head reads layer {recognizer.layer}")
    items, readable, batches, shards = processes.on_main(lambda: _plan(inputs, engine, processes.world_size))
    mine = [batches[b] for b in shards[processes.rank]]
    results: dict[str, list[Prediction]] = {}
    errors: dict[str, str] = {}
    bar = tqdm(total=sum(len(b) for b in mine), unit="file", disable=None if progress and processes.main else True,
               file=sys.stderr)
    with stop_on_sigterm(processes) as stop:
        for samples in decoded_batches(readable, mine, normalize=False, num_workers=num_workers):
            segments, raw, owners = [], [], []
            for i, wav, err in samples:
                it = readable[i]
                if err is not None:
                    errors[it.key] = err
                    continue
                bounds = window_bounds(len(wav), window, hop) if window else [(0, len(wav))]
                for a, b in bounds:
                    segments.append(engine.prepare(wav[a:b].numpy()))
                    raw.append(wav[a:b] if recognizer.needs_waveforms else None)
                    owners.append((it, a, b))
            if segments:
                feats = engine(segments)
                probs = recognizer.probabilities([f[0] for f in feats], raw if recognizer.needs_waveforms else None)
                for (it, a, b), p in zip(owners, probs):
                    results.setdefault(it.key, []).append(Prediction(
                        it.key, it.path, a / SAMPLE_RATE if window else None, b / SAMPLE_RATE if window else None, p))
            bar.update(len(samples))
            stop.check()
        bar.close()
        reports = processes.all_gather((results, errors))
    if not processes.main:
        return []
    for shard_results, shard_errors in reports:
        results.update(shard_results)
        errors.update(shard_errors)
    out: list[Prediction] = []
    for it in items:
        error = it.error or errors.get(it.key) or "no prediction"
        out += results.get(it.key) or [Prediction(it.key, it.path, error=error)]
    return out


def _columns(recognizer: Recognizer, windowed: bool) -> list[str]:
    times = ["start", "end"] if windowed else []
    if recognizer.regression:
        return ["key", *times, *recognizer.labels, "status", "path"]
    return ["key", *times, "label", *(f"p_{name}" for name in recognizer.display_labels), "status", "path"]


def predictions_tsv(predictions: list[Prediction], recognizer: Recognizer) -> str:
    """key [start end] label p_<label>... status path; labels in English, ``unuse*`` labels left out. Regression:
    key [start end] <target>... status path."""
    windowed = any(p.start is not None for p in predictions)
    lines = ["\t".join(_columns(recognizer, windowed))]
    shown = list(range(len(recognizer.labels))) if recognizer.regression else recognizer.shown
    for p in predictions:
        times = [f"{p.start:.3f}", f"{p.end:.3f}"] if windowed and p.start is not None else (["", ""] if windowed else [])
        label = [] if recognizer.regression else [""]
        if p.error is not None:
            lines.append("\t".join([p.key, *times, *label, *([""] * len(shown)), f"error: {p.error}", p.path]))
            continue
        if not recognizer.regression:
            label = [display_label(recognizer.labels[recognizer.best(p.probabilities)])]
        lines.append("\t".join([p.key, *times, *label, *(f"{p.probabilities[i]:.6f}" for i in shown), "ok", p.path]))
    return "\n".join(lines) + "\n"


def prediction_row(p: Prediction, recognizer: Recognizer) -> dict:
    """The JSON object of one input / window: ``key``, ``path``, [``start``, ``end``], then English ``label`` and
    ``scores``, the checkpoint's own strings in ``label_raw`` and ``scores_raw`` (a regression head: ``values``,
    target -> predicted value), or ``error``. The rows of ``predict --out x.jsonl`` and of ``emotion2vec serve``."""
    obj: dict = {"key": p.key, "path": p.path}
    if p.start is not None:
        obj.update(start=round(p.start, 3), end=round(p.end, 3))
    if p.error is not None:
        obj["error"] = p.error
    else:
        obj.update(recognizer.result(p.probabilities))
    return obj


def predictions_jsonl(predictions: list[Prediction], recognizer: Recognizer) -> str:
    """One :func:`prediction_row` per input / window, a line each."""
    return "\n".join(json.dumps(prediction_row(p, recognizer), ensure_ascii=False) for p in predictions) + "\n"


def timeline_png(predictions: list[Prediction], recognizer: Recognizer, title: str) -> bytes:
    """The probability of every label over the windows of one recording, the winning label marked on top (a
    regression head: every target's predicted value)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [p for p in predictions if p.error is None]
    centres = np.array([(p.start + p.end) / 2 for p in rows])
    shown = list(range(len(recognizer.labels))) if recognizer.regression else recognizer.shown
    probs = np.stack([p.probabilities[shown] for p in rows])
    names = recognizer.labels if recognizer.regression else recognizer.display_labels
    fig = Figure(figsize=(max(6.0, min(18.0, 0.25 * len(rows) + 4)), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for j, name in enumerate(names):
        ax.plot(centres, probs[:, j], marker="o" if len(rows) < 40 else None, ms=3, label=name)
    if recognizer.regression:
        ax.set_ylabel("predicted value")
    else:
        for c, j in zip(centres, probs.argmax(1)):
            ax.annotate(names[j], (c, 1.02), ha="center", va="bottom", fontsize=7, rotation=90, annotation_clip=False)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
    ax.set_xlabel("time (s), window centres")
    ax.set_title(title, pad=40)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(names), 5), loc="upper right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_outputs(predictions: list[Prediction], recognizer: Recognizer, out: str | os.PathLike | None,
                  plot_dir: str | os.PathLike | None = None) -> bool:
    """``out``: .tsv or .jsonl (atomically), None = TSV on stdout; ``plot_dir``: one timeline PNG per input.

    A table in which every input failed does not replace an existing ``out`` (it would hold nothing but errors):
    returns False then, True when the table was written."""
    if out is not None and not str(out).endswith((".tsv", ".jsonl")):
        raise RecognitionError(f"--out {out}: give a .tsv or .jsonl file")
    if out is not None and Path(out).exists() and predictions and all(p.error is not None for p in predictions):
        return False
    if out is None:
        sys.stdout.write(predictions_tsv(predictions, recognizer))
    elif str(out).endswith(".jsonl"):
        atomic_write_text(out, predictions_jsonl(predictions, recognizer))
    else:
        atomic_write_text(out, predictions_tsv(predictions, recognizer))
    if plot_dir is not None:
        by_key: dict[str, list[Prediction]] = {}
        for p in predictions:
            if p.error is None:
                by_key.setdefault(p.key, []).append(p)
        for key, rows in by_key.items():
            atomic_write_bytes(Path(plot_dir) / f"{key}.png", timeline_png(rows, recognizer, key))
    return True
