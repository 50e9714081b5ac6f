"""Feature extraction engine: length-sorted dynamic batches, decoding in worker processes, chunked long inputs.

Used by the Python API (:class:`emotion2vec.Emotion2Vec`) and by ``emotion2vec extract``.

Layer numbering: block outputs in order, prenet blocks first (emotion2vec base: 4 prenet + 8 main = 12 layers,
0..11); ``-1`` is the last block, whose output is the model's final feature (what the official script returns).
Batched results equal per-utterance results (padding never reaches a valid frame).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .audio import (AUDIO_EXTENSIONS, MIN_SAMPLES, SAMPLE_RATE, AudioError, audio_info, load_audio,
                    normalize_waveform, resampled_length)
from .features import FEATURES_FORMAT, INDEX_COLUMNS, FeatureStore
from .fileio import atomic_save_npy, atomic_write, atomic_write_text

__all__ = ["ExtractionError", "Item", "Backend", "ModelBackend", "FbankBackend", "FeatureExtractor",
           "parse_layers", "discover_inputs", "plan_batches", "run_extraction", "DTYPES"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ExtractionError(RuntimeError):
    """Bad extraction input or option; the message names the file or value."""


# ---------------------------------------------------------------------------------------------------- backends
class Backend:
    """What the engine needs from a feature model."""

    device: torch.device = torch.device("cpu")
    num_layers: int
    dim: int
    frame_rate: float
    normalize: bool
    description: str

    def num_frames(self, num_samples: int) -> int:
        raise NotImplementedError

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> torch.Tensor:
        """(B, N) padded waveforms, (B,) valid samples -> (L, B, T, D) features of the requested layers."""
        raise NotImplementedError


class ModelBackend(Backend):
    def __init__(self, model, device: torch.device, dtype: torch.dtype = torch.float32, reference: bool = False,
                 description: str = ""):
        self.model = model.eval().to(device)
        self.cfg = model.cfg
        self.device, self.dtype, self.reference = device, dtype, reference
        self.num_layers, self.dim = self.cfg.num_layers, self.cfg.embed_dim
        self.frame_rate = SAMPLE_RATE / self.cfg.frame_stride
        self.normalize = self.cfg.normalize
        self.description = description

    def num_frames(self, num_samples: int) -> int:
        return self.cfg.num_frames(num_samples)

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        lengths = lengths.to(self.device)
        pad = None
        if bool((lengths < batch.shape[1]).any()):
            pad = torch.arange(batch.shape[1], device=self.device)[None, :] >= lengths[:, None]
        autocast = self.dtype != torch.float32
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            out = self.model.extract_features(batch, pad, reference=self.reference, layers=layers, ffn=())
        return torch.stack([out.layer_outputs[i] for i in layers]).float()


class FbankBackend(Backend):
    """80-dim log-mel filterbank baseline (100 frames/s), through the same pipeline."""

    def __init__(self, device: torch.device):
        from .fbank import LogMelFbank

        self.fbank = LogMelFbank().to(device)
        self.device = device
        self.num_layers, self.dim, self.frame_rate = 1, self.fbank.dim, float(self.fbank.frame_rate)
        self.normalize = False
        self.description = "fbank"

    def num_frames(self, num_samples: int) -> int:
        return self.fbank.num_frames(num_samples)

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            feats, _ = self.fbank(batch.to(self.device), lengths.to(self.device))
        return feats.float()[None]


def load_backend(checkpoint: str, device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 trust: bool = False, preset_name: str | None = None, reference: bool = False) -> Backend:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExtractionError("--device cuda requested but CUDA is not available")
    if checkpoint == "fbank":
        return FbankBackend(device)
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ExtractionError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    from .checkpoint import load_model

    model, ckpt = load_model(checkpoint, trust=trust, preset_name=preset_name, with_decoder=False)
    return ModelBackend(model, device, dtype, reference, description=f"{checkpoint} ({ckpt.source})")


def parse_layers(spec: str | int | Sequence[int], num_layers: int) -> list[int]:
    """'-1' | 'all' | 'i,j' | int | [i, j] -> non-negative block indices (validated)."""
    if isinstance(spec, str):
        spec = spec.strip()
        if spec == "all":
            return list(range(num_layers))
        try:
            values = [int(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ExtractionError(f"--layers {spec!r}: expected -1, all, or comma-separated block indices") from None
    elif isinstance(spec, int):
        values = [spec]
    else:
        values = [int(v) for v in spec]
    if not values:
        raise ExtractionError("no layers requested")
    out = []
    for v in values:
        if not -num_layers <= v < num_layers:
            raise ExtractionError(f"layer {v} out of range: this model has {num_layers} blocks "
                                  f"(0..{num_layers - 1}, or -1 for the last)")
        out.append(v % num_layers)
    return out


# ---------------------------------------------------------------------------------------------------- inputs
@dataclass
class Item:
    key: str
    path: str
    channel: int | None = None
    num_samples: int | None = None  # at 16 kHz, from the header
    error: str | None = None


def _key_from_rel(rel: str) -> str:
    return Path(rel).with_suffix("").as_posix()


def _check_key(key: str, where: str) -> str:
    if not key or key.startswith("/") or ".." in Path(key).parts:
        raise ExtractionError(f"{where}: key {key!r} is empty, absolute or leaves the output directory")
    return key


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ExtractionError(f"{path}: cannot read: {e.strerror or e}") from None


def _items_from_tsv(path: Path) -> list[Item]:
    lines = _read_lines(path)
    if not lines:
        raise ExtractionError(f"{path}: empty manifest")
    header = lines[0].split("\t")
    items = []
    if "key" in header and "path" in header:  # `emotion2vec prepare` data.tsv
        ki, pi = header.index("key"), header.index("path")
        ci = header.index("channel") if "channel" in header else None
        for n, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) <= max(ki, pi):
                raise ExtractionError(f"{path}:{n}: expected {len(header)} tab-separated columns")
            channel = cols[ci].strip() if ci is not None and ci < len(cols) else ""
            items.append(Item(_check_key(cols[ki], f"{path}:{n}"), cols[pi], int(channel) if channel else None))
        return items
    root = Path(lines[0].strip())  # fairseq manifest: root line, then relative_path<TAB>num_samples
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        rel = line.split("\t")[0]
        p = Path(rel)
        items.append(Item(_check_key(_key_from_rel(rel), f"{path}:{n}"), str(p if p.is_absolute() else root / p)))
    return items


def _items_from_scp(path: Path) -> list[Item]:
    items = []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise ExtractionError(f"{path}:{n}: expected 'key path', got {line!r}")
        if parts[1].rstrip().endswith("|"):
            raise ExtractionError(f"{path}:{n}: piped commands in wav.scp are not supported; give a file path")
        items.append(Item(_check_key(parts[0], f"{path}:{n}"), parts[1].strip()))
    return items


def _items_from_jsonl(path: Path) -> list[Item]:
    items = []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ExtractionError(f"{path}:{n}: invalid JSON: {e.msg}") from None
        audio = obj.get("path") or obj.get("source") or obj.get("wav") if isinstance(obj, dict) else None
        if not audio:
            raise ExtractionError(f"{path}:{n}: needs a 'path' (or 'source'/'wav') field")
        key = obj.get("key") or _key_from_rel(Path(audio).name)
        channel = obj.get("channel")
        items.append(Item(_check_key(str(key), f"{path}:{n}"), str(audio), int(channel) if channel is not None else None))
    return items


def discover_inputs(inputs: Sequence[str | os.PathLike]) -> list[Item]:
    """Manifest (.tsv: fairseq or data.tsv), Kaldi wav.scp (.scp), jsonl, directories (recursive) or audio files."""
    items: list[Item] = []
    loose: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
            if not files:
                raise ExtractionError(f"{p}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
            items += [Item(_key_from_rel(f.relative_to(p).as_posix()), str(f)) for f in files]
        elif p.suffix == ".tsv":
            items += _items_from_tsv(p)
        elif p.suffix == ".scp" or p.name == "wav.scp":
            items += _items_from_scp(p)
        elif p.suffix == ".jsonl":
            items += _items_from_jsonl(p)
        elif p.suffix.lower() in AUDIO_EXTENSIONS:
            loose.append(p)
        elif not p.exists():
            raise ExtractionError(f"{p}: no such file or directory")
        else:
            raise ExtractionError(f"{p}: unsupported input (expected audio {', '.join(AUDIO_EXTENSIONS)}, a directory, "
                                  f".tsv, wav.scp/.scp or .jsonl)")
    if loose:
        base = Path(os.path.commonpath([str(f.resolve().parent) for f in loose]))
        items += [Item(_key_from_rel(f.resolve().relative_to(base).as_posix()), str(f)) for f in loose]
    if not items:
        raise ExtractionError("no inputs: the manifest or list is empty")
    seen: dict[str, str] = {}
    for it in items:
        if it.key in seen:
            raise ExtractionError(f"duplicate key {it.key!r} for {seen[it.key]} and {it.path}")
        seen[it.key] = it.path
    return items


def probe_lengths(items: list[Item]) -> None:
    """Fill ``num_samples`` (at 16 kHz) from file headers; unreadable files get ``error``."""
    for it in items:
        try:
            info = audio_info(it.path)
        except AudioError as e:
            it.error = e.reason
            continue
        if it.channel is not None and it.channel >= info.channels:
            it.error = f"channel {it.channel} requested but the file has {info.channels} channel(s)"
        elif info.frames == 0:
            it.error = "empty audio (0 samples)"
        else:
            it.num_samples = resampled_length(info.frames, info.sample_rate)
            if it.num_samples < MIN_SAMPLES:
                it.error = f"too short: {it.num_samples} samples at 16 kHz (< {MIN_SAMPLES}, 25 ms)"


def plan_batches(lengths: Sequence[int], max_tokens: int, long_samples: int) -> list[list[int]]:
    """Length-sorted greedy batches with batch_size * longest <= max_tokens; items over ``long_samples`` alone."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        n = lengths[i]
        if n > long_samples:
            batches.append([i])
            continue
        if current and (len(current) + 1) * lengths[current[0]] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


# ---------------------------------------------------------------------------------------------------- engine
def default_max_tokens(device: str | torch.device) -> int:
    """Padded samples per batch when --max-tokens is not given.

    On a CPU, batching buys no compute: the convolutional front end and the elementwise ops are memory-bound, and
    benchmarks/forward.py measures batch 8 slower per second of audio than batch 1. Batches stay at 10 s of audio,
    which halves peak memory at the same speed (benchmarks/extract.py). On a GPU, large batches are the point.
    """
    return 1_000_000 if torch.device(device).type == "cuda" else 160_000


class FeatureExtractor:
    """Waveforms -> features with batching and chunking. Outputs per item: (L, T, D) float32 tensors."""

    def __init__(self, backend: Backend, layers: list[int], max_tokens: int | None = None,
                 chunk_seconds: float = 30.0):
        """``max_tokens``: padded samples per batch (default: :func:`default_max_tokens` of the backend's device); a
        batch always holds at least one input or window, so peak memory follows max(max_tokens, chunk)."""
        self.backend, self.layers = backend, layers
        self.max_tokens = int(max_tokens if max_tokens is not None else default_max_tokens(backend.device))
        self.chunk_samples = int(chunk_seconds * SAMPLE_RATE)
        if self.chunk_samples < 2 * SAMPLE_RATE:
            raise ExtractionError(f"--chunk-seconds {chunk_seconds} is too small (>= 2 s)")
        if self.max_tokens < 1:
            raise ExtractionError(f"--max-tokens {max_tokens} must be positive")

    def prepare(self, wav: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        return normalize_waveform(x) if self.backend.normalize else x

    def forward_batch(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Equal-or-shorter prepared waveforms (each <= chunk length) in one padded forward."""
        lengths = torch.tensor([len(w) for w in wavs])
        batch = torch.zeros(len(wavs), int(lengths.max()))
        for b, w in enumerate(wavs):
            batch[b, :len(w)] = w
        feats = self.backend.forward(batch, lengths, self.layers).cpu()  # (L, B, T, D)
        return [feats[:, b, :self.backend.num_frames(int(n))] for b, n in enumerate(lengths)]

    def windows(self, num_samples: int) -> list[tuple[int, int, int, int]]:
        """Chunk plan for a long input: (sample start, sample length, first kept frame, end kept frame)."""
        stride = SAMPLE_RATE // int(self.backend.frame_rate)  # samples per frame
        total = self.backend.num_frames(num_samples)
        wf = self.backend.num_frames(self.chunk_samples)
        context = wf // 6  # frames of left/right context each window adds around the part it keeps
        step = wf - 2 * context
        starts = list(range(0, max(total - wf, 0), step)) + [max(total - wf, 0)]
        plan = []
        for k, a in enumerate(starts):
            length = min(self.chunk_samples, num_samples - a * stride)
            frames = self.backend.num_frames(length)
            lo = 0 if k == 0 else plan[-1][3]
            hi = total if k == len(starts) - 1 else (starts[k + 1] + a + frames) // 2
            plan.append((a * stride, length, lo, hi))
        return plan

    def forward_long(self, wav: torch.Tensor) -> torch.Tensor:
        """Overlapping windows stitched onto the unchunked frame grid (same frame count and timing)."""
        stride = SAMPLE_RATE // int(self.backend.frame_rate)
        plan = self.windows(len(wav))
        per_batch = max(1, self.max_tokens // self.chunk_samples)
        pieces = []
        for i in range(0, len(plan), per_batch):
            group = plan[i:i + per_batch]
            outs = self.forward_batch([wav[s:s + n] for s, n, _, _ in group])
            for (s, _, lo, hi), feats in zip(group, outs):
                first = s // stride
                pieces.append(feats[:, lo - first:hi - first])
        out = torch.cat(pieces, dim=1)
        assert out.shape[1] == self.backend.num_frames(len(wav)), (out.shape, len(wav))
        return out

    def __call__(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Prepared waveforms -> (L, T, D) each, batched by length, long ones chunked."""
        results: list[torch.Tensor | None] = [None] * len(wavs)
        for batch in plan_batches([len(w) for w in wavs], self.max_tokens, self.chunk_samples):
            if len(batch) == 1 and len(wavs[batch[0]]) > self.chunk_samples:
                results[batch[0]] = self.forward_long(wavs[batch[0]])
            else:
                for i, out in zip(batch, self.forward_batch([wavs[i] for i in batch])):
                    results[i] = out
        return results  # type: ignore[return-value]


def pool(feats: torch.Tensor, granularity: str, single_layer: bool) -> np.ndarray:
    """(L, T, D) -> (T, D) | (D,) | (L, T, D) | (L, D) float32 numpy."""
    x = feats.mean(dim=1) if granularity == "utterance" else feats
    x = x[0] if single_layer else x
    return x.numpy().astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------------- CLI run
class _AudioDataset(torch.utils.data.Dataset):
    """Decodes, resamples and normalises in DataLoader workers; errors come back as values, not exceptions."""

    def __init__(self, items: list[Item], normalize: bool):
        self.items, self.normalize = items, normalize

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        try:
            wav = load_audio(it.path, SAMPLE_RATE, channel=it.channel, min_samples=MIN_SAMPLES)
        except AudioError as e:
            return i, None, e.reason
        x = torch.from_numpy(wav)
        return i, (normalize_waveform(x) if self.normalize else x), None


def _collate(samples):
    return samples


_SETTINGS = ("checkpoint", "checkpoint_stamp", "granularity", "layers", "packed", "dim")


def checkpoint_stamp(checkpoint: str) -> str:
    """Size and modification time of the checkpoint's weights: a re-trained file at the same path is noticed."""
    p = Path(checkpoint)
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


def run_extraction(inputs: Sequence[str], out_dir: str | os.PathLike, backend: Backend, layers: list[int],
                   granularity: str = "frame", max_tokens: int | None = None, num_workers: int = 0,
                   chunk_seconds: float = 30.0, packed: bool = False, overwrite: bool = False,
                   skip_errors: bool = False, checkpoint_name: str = "", progress: bool = True,
                   log=None) -> dict[str, Any]:
    """Extract features for ``inputs`` into ``out_dir``; returns a summary dict (``failed`` > 0 => errors)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if granularity not in ("frame", "utterance"):
        raise ExtractionError(f"--granularity {granularity!r}: choose frame or utterance")
    out = Path(out_dir)
    items = discover_inputs(inputs)
    meta = {"format": FEATURES_FORMAT, "version": 1, "checkpoint": checkpoint_name,
            "checkpoint_stamp": checkpoint_stamp(checkpoint_name), "model": backend.description,
            "granularity": granularity, "layers": layers, "dim": backend.dim, "frame_rate": backend.frame_rate,
            "packed": packed, "dtype": "float32", "normalize": backend.normalize, "sample_rate": SAMPLE_RATE,
            "num_layers": backend.num_layers}
    meta_path = out / "features.json"
    if meta_path.exists() and not overwrite:
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            old = {}
        if {k: old.get(k) for k in _SETTINGS} != {k: meta[k] for k in _SETTINGS}:
            raise ExtractionError(f"{out} holds features made with other settings ({meta_path}: "
                                  f"{ {k: old.get(k) for k in _SETTINGS} }); use --overwrite or another --out")
        if packed and (out / "features.npy").exists():
            done = FeatureStore(out)
            if all(it.key in done for it in items):
                log(f"{out}: all {len(items)} inputs already extracted (packed); nothing to do")
                return {"total": len(items), "extracted": 0, "skipped": len(items), "failed": 0, "out": str(out)}
            raise ExtractionError(f"{out}: a packed output exists and does not cover every input; use --overwrite")
    if overwrite and out.exists():
        for name in ("features.json", "index.tsv", "features.npy", "features.lengths"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_if_changed(meta_path, json.dumps(meta, indent=2) + "\n")
    parts = out / ".parts" if packed else out

    def npy_path(it: Item) -> Path:
        return parts / f"{it.key}.npy"

    todo = [it for it in items if overwrite or not npy_path(it).exists()]
    skipped = len(items) - len(todo)
    if skipped:
        log(f"resuming: {skipped} of {len(items)} outputs already exist in {out} (use --overwrite to redo them)")
    probe_lengths(todo)
    readable = [it for it in todo if it.error is None]
    extractor = FeatureExtractor(backend, layers, max_tokens, chunk_seconds)
    batches = plan_batches([it.num_samples for it in readable], extractor.max_tokens, extractor.chunk_samples)
    loader = torch.utils.data.DataLoader(_AudioDataset(readable, backend.normalize), batch_sampler=batches,
                                         num_workers=num_workers, collate_fn=_collate,
                                         prefetch_factor=4 if num_workers else None,
                                         persistent_workers=False)
    frames: dict[str, int] = {}
    total_audio = sum(it.num_samples for it in readable) / SAMPLE_RATE
    from tqdm import tqdm

    bar = tqdm(total=len(readable), unit="file", disable=None if progress else True, dynamic_ncols=True,
               file=sys.stderr)  # None: shown on a terminal only
    done_audio, t0 = 0.0, time.perf_counter()
    single = len(layers) == 1
    for samples in loader:
        ok = [(i, w) for i, w, err in samples if err is None]
        for i, _, err in samples:
            if err is not None:
                readable[i].error = err
        if ok:
            results = extractor([w for _, w in ok])
            for (i, w), feats in zip(ok, results):
                it = readable[i]
                atomic_save_npy(npy_path(it), pool(feats, granularity, single))
                frames[it.key] = feats.shape[1]
                done_audio += len(w) / SAMPLE_RATE
        bar.update(len(samples))
        elapsed = max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix_str(f"{done_audio / 3600:.3f}/{total_audio / 3600:.3f} h audio, "
                            f"{done_audio / elapsed:.1f}x realtime")
    bar.close()

    failed = [it for it in todo if it.error is not None]
    for it in failed:
        log(f"error: {it.path}: {it.error}")
    rows = []
    offset = 0
    for it in items:
        if it.error is not None:
            rows.append([it.key, it.path, "0", f"error: {it.error}", "", ""])
            continue
        path = npy_path(it)
        if it.key not in frames:  # finished in an earlier run: read the frame count from the .npy header
            arr = np.load(path, mmap_mode="r")
            frames[it.key] = arr.shape[-2] if granularity == "frame" else 1
        n = frames[it.key] if granularity == "frame" else 1
        if packed:
            rows.append([it.key, it.path, str(n), "ok", "features.npy", str(offset)])
            offset += n
        else:
            rows.append([it.key, it.path, str(n), "ok", path.relative_to(out).as_posix(), ""])
    if packed:
        _pack(out, parts, [it for it in items if it.error is None], offset, layers, backend.dim, granularity)
    _write_if_changed(out / "index.tsv", "\t".join(INDEX_COLUMNS) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    elapsed = time.perf_counter() - t0
    summary = {"total": len(items), "extracted": len(frames) - skipped,
               "skipped": skipped, "failed": len(failed), "audio_seconds": done_audio, "seconds": elapsed,
               "out": str(out)}
    log(f"extracted {summary['extracted']} file(s) ({done_audio / 60:.1f} min of audio) in {elapsed:.1f} s; "
        f"{skipped} already done; {len(failed)} failed -> {out / 'index.tsv'}")
    if failed and not skip_errors:
        summary["exit_code"] = 1
    return summary


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
    import shutil

    shutil.rmtree(parts, ignore_errors=True)
