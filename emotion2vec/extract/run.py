"""``emotion2vec extract``: a resumable run that writes one ``.npy`` per input (or one packed array), in one process
or sharded over the processes of a ``torchrun`` job (:mod:`emotion2vec.distributed`).

The run, step by step (:func:`run_extraction`):
    1. discover the inputs (:mod:`.inputs`)
    2. record the settings in ``features.json``; a folder made with other settings is refused, naming each setting
       that differs with both values (``--overwrite`` redoes it)
    3. skip inputs whose ``.npy`` exists (resume), read the others' lengths from their headers, plan the batches
    4. decode in worker processes, batch by length, forward, write each ``.npy`` atomically; sharded, each process
       takes whole batches of the plan (balanced by seconds of audio), so every input is computed as in one process
    5. write ``index.tsv`` and, with ``--packed``, ``features.npy``. The index lists every output of the folder: the
       inputs of this run, with their status, and the earlier runs' outputs of other keys (made with the same
       settings). An input that fails has no output: an earlier ``.npy`` of its key is removed.

Steps 1-3 run in process 0, which sends the plan to the others; step 5 runs in process 0 once every process has
finished its shard. While a sharded run works, ``.shards.json`` in the folder says which process took which inputs:
a later run that finds it names the processes that did not finish.
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

from ..distributed import Processes, Stop, balanced_shards, stop_on_sigterm
from ..io.atomic import atomic_save_npy, atomic_write_text
from ..io.audio import SAMPLE_RATE
from . import GRANULARITIES, SEQUENCE_GRANULARITIES, ExtractionError
from .backends import Backend, token_backend
from .engine import BatchedForward, plan_batches, pool
from .inputs import Item, decoded_batches, discover_inputs, probe_lengths
from .store import FEATURES_FORMAT, FEATURES_VERSION, INDEX_COLUMNS, FeatureStore, FeatureStoreError, read_index

__all__ = ["ExtractionResult", "run_extraction", "checkpoint_stamp", "SETTINGS", "SHARDS_RECORD"]

#: features.json fields that must agree for a resume to add to a folder
SETTINGS = ("checkpoint", "checkpoint_stamp", "backend", "dtype", "attention", "granularity", "layers", "dim",
            "chunk_seconds", "packed", "scores", "text_pooling")
#: written while a sharded run works: which process took which inputs
SHARDS_RECORD = ".shards.json"


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


def _inside(out: Path, relative: str) -> Path | None:
    """``out / relative`` when it names a .npy inside ``out`` (an index row's output), else None."""
    if not relative.endswith(".npy"):
        return None
    path = (out / relative).resolve()
    return path if out.resolve() in path.parents else None


def _previous_rows(out: Path) -> list[dict[str, str]]:
    try:
        return read_index(out / "index.tsv") if (out / "index.tsv").exists() else []
    except (FeatureStoreError, OSError, UnicodeDecodeError):
        return []


@dataclass
class _Folder:
    """What the output folder holds before the run: ``complete`` (a packed output covers every input), the keys of
    its earlier index in order (``order``) and the rows of keys outside this run that stay listed (``carried``)."""

    complete: bool = False
    order: list[str] = field(default_factory=list)
    carried: list[dict[str, str]] = field(default_factory=list)


def _open_output(out: Path, meta: dict[str, Any], items: list[Item], overwrite: bool, log) -> _Folder:
    """Create or check the output folder (step 2) and find the earlier outputs that stay listed in index.tsv."""
    meta_path = out / "features.json"
    old: dict[str, Any] | None = None
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}
        if not isinstance(old, dict):
            old = {}
    diffs = _differences(old, meta) if old is not None else []
    if old is not None and diffs and not overwrite:
        raise ExtractionError(f"{out} holds features made with other settings: " + "; ".join(diffs)
                              + ". Use --overwrite to redo them, or another --out.")
    folder = _Folder()
    if old is not None and not overwrite and meta["packed"] and (out / "features.npy").exists():
        done = FeatureStore(out)
        if all(it.key in done for it in items):
            log(f"{out}: all {len(items)} inputs already extracted (packed); nothing to do")
            folder.complete = True
            return folder
        raise ExtractionError(f"{out}: a packed output exists and does not cover every input; use --overwrite")
    keys = {it.key for it in items}
    earlier = _previous_rows(out) if old is not None and not meta["packed"] else []  # packed: input order
    folder.order = [r["key"] for r in earlier]
    others = [r for r in earlier if r["key"] not in keys]
    if others:
        if not diffs:  # same settings: every earlier output of another key stays valid and listed
            folder.carried = [r for r in others if r["status"] != "ok"
                              or ((p := _inside(out, r.get("output", ""))) is not None and p.is_file())]
        else:  # --overwrite with other settings: the folder's earlier outputs would mix settings
            removed = 0
            for r in others:
                p = _inside(out, r.get("output", ""))
                if p is not None and p.is_file():
                    p.unlink()
                    removed += 1
            if removed:
                log(f"--overwrite with other settings: removed {removed} earlier output(s) of keys outside this run "
                    f"(made with the old settings)")
    if overwrite and out.exists():
        for name in ("features.json", "index.tsv", "features.npy", "features.lengths"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_if_changed(meta_path, json.dumps(meta, indent=2) + "\n")
    return folder


# ------------------------------------------------------------------------------------------------ step 3: plan
@dataclass
class _Plan:
    """What process 0 decided: every input (``items``, input order), the readable inputs left to do (``work``), the
    batches over ``work`` (length-sorted, as one process would run them) and who takes which (``shards``: batch
    indices per process)."""

    items: list[Item]
    work: list[Item] = field(default_factory=list)
    batches: list[list[int]] = field(default_factory=list)
    shards: list[list[int]] = field(default_factory=list)
    skipped: int = 0
    complete: bool = False
    order: list[str] = field(default_factory=list)
    carried: list[dict[str, str]] = field(default_factory=list)
    scores: dict[str, np.ndarray] | None = None


def _report_unfinished(out: Path, npy_path: Callable[[Item], Path], log) -> None:
    """Name the processes of an earlier sharded run that stopped before it was merged, and what each left undone."""
    try:
        record = json.loads((out / SHARDS_RECORD).read_text())
        ranks = record["processes"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    parts = []
    for p in ranks:
        left = sum(not npy_path(Item(k, "")).exists() for k in p.get("keys", []))
        parts.append(f"process {p.get('rank')} (local rank {p.get('local_rank')} on {p.get('host')}, pid "
                     f"{p.get('pid')}) left {left} of its {len(p.get('keys', []))} file(s)")
    log(f"an earlier run of {len(ranks)} processes stopped before merging its outputs: " + "; ".join(parts))


def _plan(inputs: Sequence[str], out: Path, meta: dict[str, Any], engine: BatchedForward, overwrite: bool,
          recognizer, npy_path: Callable[[Item], Path], who: list[dict[str, Any]], log) -> _Plan:
    items = discover_inputs(inputs)                                                           # 1
    folder = _open_output(out, meta, items, overwrite, log)                                   # 2
    plan = _Plan(items, complete=folder.complete, order=folder.order, carried=folder.carried)
    if folder.complete:
        return plan
    names = recognizer.display_labels if recognizer is not None else []
    plan.scores = None if recognizer is None else ({} if overwrite else _previous_scores(out / "index.tsv", names))
    _report_unfinished(out, npy_path, log)
    todo = [it for it in items if overwrite or not npy_path(it).exists()                      # 3
            or (plan.scores is not None and it.key not in plan.scores)]
    plan.skipped = len(items) - len(todo)
    if plan.skipped:
        log(f"resuming: {plan.skipped} of {len(items)} outputs already exist in {out} (use --overwrite to redo them)")
    probe_lengths(todo)
    plan.work = [it for it in todo if it.error is None]
    plan.batches = plan_batches([it.num_samples for it in plan.work], engine.max_tokens, engine.chunk_samples)
    seconds = [sum(plan.work[i].num_samples for i in b) / SAMPLE_RATE for b in plan.batches]
    plan.shards = balanced_shards(seconds, len(who))
    if len(who) > 1:
        record = {"processes": [{**p, "keys": [plan.work[i].key for b in shard for i in plan.batches[b]]}
                                for p, shard in zip(who, plan.shards)]}
        atomic_write_text(out / SHARDS_RECORD, json.dumps(record) + "\n")
    return plan


# ------------------------------------------------------------------------------------------------ step 4: compute
def _compute(items: list[Item], batches: list[list[int]], engine: BatchedForward, npy_path: Callable[[Item], Path],
             granularity: str, num_workers: int, progress: bool, layers: list[int], recognizer=None,
             scores: dict[str, np.ndarray] | None = None, stop: Stop | None = None
             ) -> tuple[dict[str, int], dict[str, str], float]:
    """Extract the items of ``batches`` (index lists into ``items``) and write the .npy of ``layers``. With a
    ``recognizer`` (whose layer the engine also computes), its class probabilities go into ``scores`` by key.
    -> ({key: frames}, {key: decoding error}, seconds of audio done)."""
    from tqdm import tqdm

    backend = engine.backend
    loader = decoded_batches(items, batches, backend.normalize, num_workers)
    frames: dict[str, int] = {}
    errors: dict[str, str] = {}
    total_audio = sum(items[i].num_samples for b in batches for i in b) / SAMPLE_RATE
    bar = tqdm(total=sum(len(b) for b in batches), unit="file", disable=None if progress else True,
               dynamic_ncols=True, file=sys.stderr)  # None: shown on a terminal only
    done_audio, t0 = 0.0, time.perf_counter()
    single = len(layers) == 1
    keep = [engine.layers.index(layer) for layer in layers]
    for samples in loader:
        ok = [(i, w) for i, w, err in samples if err is None]
        for i, _, err in samples:
            if err is not None:
                errors[items[i].key] = err
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
        if stop is not None:
            stop.check()
        elapsed = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"{done_audio / 3600:.3f}/{total_audio / 3600:.3f} h audio, "
                            f"{done_audio / elapsed:.1f}x realtime")
    bar.close()
    return frames, errors, done_audio


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


def _write_index(out: Path, header: list[str], rows: list[list[str]], order: list[str],
                 carried: list[dict[str, str]]) -> None:
    """index.tsv: the rows of this run's inputs and the ``carried`` rows of earlier runs, in the ``order`` of the
    folder's earlier index (keys new to the folder after them, in input order)."""
    mine = {r[0]: r for r in rows}
    kept = {r["key"]: [r.get(c) or "" for c in header] for r in carried}
    ordered: list[list[str]] = []
    for key in order:
        row = mine.pop(key, None) or kept.pop(key, None)
        if row is not None:
            ordered.append(row)
    ordered += [r for r in rows if r[0] in mine]
    _write_if_changed(out / "index.tsv", "\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in ordered))


def _previous_scores(index: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Class probabilities an earlier run wrote into index.tsv (its p_<label> columns), by key."""
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


def _check_shared(out: Path, reports: list[dict[str, Any]], work: list[Item], npy_path: Callable[[Item], Path],
                  who: list[dict[str, Any]]) -> None:
    """Every output another process reported is visible here: the output folder is one folder for all nodes."""
    by_key = {it.key: it for it in work}
    for rank, report in enumerate(reports):
        missing = [k for k in report["frames"] if not npy_path(by_key[k]).exists()]
        if missing:
            p = who[rank]
            raise ExtractionError(f"{len(missing)} output(s) that process {rank} (on {p['host']}) wrote are not in "
                                  f"{out} as process 0 (on {who[0]['host']}) sees it, e.g. {missing[0]}.npy: --out "
                                  f"must be a folder every node of the job shares (a shared file system)")


# ------------------------------------------------------------------------------------------------ the run
def run_extraction(inputs: Sequence[str], out_dir: str | os.PathLike, backend: Backend, layers: list[int],
                   granularity: str = "frame", max_tokens: int | None = None, num_workers: int = 0,
                   chunk_seconds: float = 30.0, packed: bool = False, overwrite: bool = False,
                   checkpoint_name: str = "", progress: bool = True, log=None, recognizer=None,
                   processes: Processes | None = None) -> ExtractionResult:
    """Extract features for ``inputs`` into ``out_dir`` (see the module docstring for the steps).

    ``recognizer`` (a model's classification head, :class:`~emotion2vec.recognize.recognizer.Recognizer`): its class
    probabilities are written beside the features, as ``p_<label>`` columns of index.tsv.
    ``granularity`` ``tokens``: the outputs at the utterance-token positions, (E, D) per input and layer
    (:class:`~.backends.UtteranceTokenBackend`).
    ``processes``: this process's place in a sharded job (:func:`emotion2vec.distributed.join`); every process of
    the job calls this with the same arguments. The result is the job's on process 0, this process's share on the
    others.
    """
    processes = processes or Processes()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    say = log if processes.main else (lambda msg: None)
    if granularity not in GRANULARITIES:
        raise ExtractionError(f"--granularity {granularity!r}: choose {', '.join(GRANULARITIES)}")
    if granularity == "tokens":
        if recognizer is not None:
            raise ExtractionError("--scores reads the frames of the classifier's layer: it does not go with "
                                  "--granularity tokens")
        backend = token_backend(backend, checkpoint_name)
    out = Path(out_dir)
    t0 = time.perf_counter()
    computed = layers + ([recognizer.layer] if recognizer is not None and recognizer.layer not in layers else [])
    engine = BatchedForward(backend, computed, max_tokens, chunk_seconds)
    meta = _settings(backend, checkpoint_name, granularity, layers, packed, chunk_seconds)
    meta["scores"] = recognizer.display_labels if recognizer is not None else None
    parts = out / ".parts" if packed else out

    def npy_path(it: Item) -> Path:
        return parts / f"{it.key}.npy"

    who = processes.all_gather({"rank": processes.rank, "local_rank": processes.local_rank,
                                "host": processes.host, "pid": os.getpid()})
    plan: _Plan = processes.on_main(lambda: _plan(inputs, out, meta, engine, overwrite, recognizer, npy_path,
                                                  who, log))                                   # 1-3
    items = plan.items
    if plan.complete:
        return ExtractionResult(len(items), 0, len(items), [], 0.0, 0.0, out)
    mine = [plan.batches[b] for b in plan.shards[processes.rank]]
    if processes.sharded:
        n = sum(len(b) for b in mine)
        seconds = sum(plan.work[i].num_samples for b in mine for i in b) / SAMPLE_RATE
        log(f"{processes.name()}: {n} of the {len(plan.work)} file(s) to do, {seconds / 60:.1f} min of audio, on "
            f"{backend.device}")
    scores = None if plan.scores is None else dict(plan.scores)
    with stop_on_sigterm(processes) as stop:
        frames, errors, done_audio = _compute(plan.work, mine, engine, npy_path, granularity, num_workers,  # 4
                                              progress and processes.main, layers, recognizer, scores, stop)
        mine_scores = None if scores is None else {k: scores[k] for k in frames}
        reports = processes.all_gather({"frames": frames, "errors": errors, "scores": mine_scores,
                                        "audio": done_audio})
    if not processes.main:
        failed = [(k, "", e) for k, e in errors.items()]
        return ExtractionResult(len(items), len(frames), plan.skipped, failed, done_audio,
                                time.perf_counter() - t0, out)
    if processes.sharded:
        _check_shared(out, reports, plan.work, npy_path, who)
    frames, done_audio = {}, 0.0
    for report in reports:
        frames.update(report["frames"])
        done_audio += report["audio"]
        if scores is not None:
            scores.update(report["scores"])
        for it in plan.work:
            if it.key in report["errors"]:
                it.error = report["errors"][it.key]
    failed = [(it.key, it.path, it.error) for it in items if it.error is not None]
    for key, path, reason in failed:
        log(f"error: {path}: {reason}")
        stale = npy_path(Item(key, path))
        if stale.exists():  # an input that fails has no output (an earlier one would be listed as an error)
            stale.unlink()
            log(f"  removed the earlier output of {key}")
    extracted = len(frames)
    rows, total_frames = _index_rows(out, items, frames, npy_path, granularity, packed,     # 5
                                     scores, recognizer.shown if recognizer is not None else None)
    if packed:
        _pack(out, parts, [it for it in items if it.error is None], total_frames, layers, backend.dim, granularity)
    names = recognizer.display_labels if recognizer is not None else []
    _write_index(out, list(INDEX_COLUMNS) + [f"p_{n}" for n in names], rows, plan.order, plan.carried)
    (out / SHARDS_RECORD).unlink(missing_ok=True)
    result = ExtractionResult(len(items), extracted, plan.skipped, failed, done_audio, time.perf_counter() - t0, out)
    if plan.carried:
        result.notes.append(f"{len(plan.carried)} earlier output(s) of other keys stay listed in index.tsv")
    say(f"extracted {extracted} file(s) ({done_audio / 60:.1f} min of audio) in {result.seconds:.1f} s"
        + (f" by {processes.world_size} processes" if processes.sharded else "")
        + f"; {plan.skipped} already done; {len(failed)} failed -> {out / 'index.tsv'}"
        + (f" (which also lists {len(plan.carried)} earlier output(s) of other keys)" if plan.carried else ""))
    return result
