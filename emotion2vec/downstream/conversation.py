"""Emotion prediction in conversation (``emotion2vec conversation``; the emotion2vec paper's Table 6): predict the
emotion of a speaker's next turn from the previous turns of the dialogue, with hierarchical GRUs over frozen
utterance features.

Dialogues come from ``data.tsv`` (``emotion2vec prepare iemocap`` writes the columns): ``dialog`` (the dialogue id),
``start`` (the utterance's start time in seconds: the order) and ``speaker``. In time order, consecutive utterances
of one speaker form a **turn**. A sample is a turn t of a dialogue whose ``history`` (6) previous turns exist: the
input is those turns, the target the emotion of turn t, which the model never hears. A turn's emotion is the most
frequent label among its utterances whose (mapped) label is one of the classes (ties: the earliest); a turn without
one is not a target, but still serves as context. A dialogue with at most ``history`` turns gives no sample: it is
listed (by dialogue id and turn count) in the log and in results.json, and the run goes on.

The model (:class:`HierarchicalGRU`): each utterance vector -> Linear(D -> hidden) + ReLU -> a two-layer GRU over
the utterances of a turn (its last state is the turn vector) -> with a flag saying whether the turn's speaker is the
target turn's speaker -> a two-layer GRU over the ``history`` turns -> dropout -> Linear(hidden -> C). Frame-level
features are averaged per utterance first (utterance tokens: their mean); ``concat`` joins further sources (speech
+ text: :func:`~.features.load_sources`). Inputs are standardised with the training utterances' mean and std.

Folds: a prepared corpus's folds (``--protocol loso-speaker`` for the paper's leave-one-speaker-out 10 folds on
IEMOCAP): a sample belongs to the split that holds its target turn's first utterance; context turns may be spoken by
speakers of other splits (their features are inputs, their labels are never used). Each fold trains with Adam and
cross-entropy and keeps the epoch with the best valid UA (UAR); a fold without valid samples gets a seeded
``valid_fraction`` of its training samples. Metrics: UAR (= UA) and macro-F1 (the paper's two), WA and WF1, with a
bootstrap interval of the UAR per fold.

Outputs (``out``): results.json (in the probe's format, so ``emotion2vec report`` tabulates it; task categorical,
plus a ``conversation`` block), results.md, predictions.tsv (one line per test sample: fold, target turn key,
label, prediction, probabilities) and confusion.png.
"""

from __future__ import annotations

import copy
import datetime
import math
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import ProbeError
from .metrics import fast_scores, summarize
from .runs import FoldOutcome, FoldSplit, Selection, carve_valid, prediction_records, run_folds
from .targets import Targets

__all__ = ["ConversationConfig", "Turn", "Sample", "build_turns", "make_samples", "HierarchicalGRU",
           "run_conversation", "DIALOGUE_COLUMNS"]

DIALOGUE_COLUMNS = ("dialog", "start", "speaker")
METRICS = ("ua", "macro_f1", "wa", "wf1")


@dataclass
class ConversationConfig:
    history: int = 6  # previous turns a prediction sees
    hidden: int = 256
    gru_layers: int = 2
    dropout: float = 0.2
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 42
    standardize: bool = True
    valid_fraction: float = 0.2
    bootstrap: int = 1000

    def __post_init__(self):
        for name in ("history", "hidden", "gru_layers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ProbeError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ProbeError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ProbeError(f"--valid-fraction must lie in [0, 1), got {self.valid_fraction}")
        if self.lr <= 0 or self.bootstrap < 0:
            raise ProbeError(f"--lr must be positive and --bootstrap >= 0, got {self.lr} and {self.bootstrap}")


@dataclass
class Turn:
    """Consecutive utterances of one speaker: ``keys`` in time order, ``label`` None when no utterance carries one
    of the classes."""

    dialog: str
    speaker: str
    keys: list[str]
    label: str | None = None


@dataclass
class Sample:
    """Predict turn ``target`` of ``dialog`` from the turns ``context`` (oldest first)."""

    dialog: str
    key: str  # the target turn's first utterance: decides the split
    label: str
    context: list[Turn]
    speaker: str  # the target turn's speaker


# ------------------------------------------------------------------------------------------------ dialogues
def _check_columns(rows: Sequence[Mapping], where: str) -> None:
    missing = [c for c in DIALOGUE_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ProbeError(f"{where}: no {', '.join(missing)} column(s): the conversation task needs each utterance's "
                         f"dialogue, start time and speaker (`emotion2vec prepare iemocap` writes them)")


def build_turns(rows: Sequence[Mapping], classes: Sequence[str], label_map: Mapping[str, str] | None = None,
                where: str = "data.tsv") -> dict[str, list[Turn]]:
    """Dialogue id -> its turns in time order. ``label_map`` renames labels ('' = not a target)."""
    _check_columns(rows, where)
    mapping = dict(label_map or {})
    wanted = set(classes)
    by_dialog: dict[str, list[tuple[float, str, Mapping]]] = defaultdict(list)
    bad = []
    for r in rows:
        dialog = str(r.get("dialog") or "").strip()
        try:
            start = float(r["start"])
        except (TypeError, ValueError):
            start = math.nan
        if not dialog or not math.isfinite(start):
            bad.append(f"key {r['key']!r}: dialog {r.get('dialog')!r}, start {r.get('start')!r}")
            continue
        by_dialog[dialog].append((start, str(r["key"]), r))
    if bad:
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ProbeError(f"{where}: {len(bad)} utterance(s) without a dialogue id or a numeric start time:\n  "
                         + "\n  ".join(bad[:20]) + more)
    dialogs: dict[str, list[Turn]] = {}
    for dialog, utts in sorted(by_dialog.items()):
        turns: list[Turn] = []
        labels: list[list[str]] = []
        for _, key, r in sorted(utts, key=lambda u: (u[0], u[1])):
            speaker = str(r.get("speaker", ""))
            if not turns or turns[-1].speaker != speaker:
                turns.append(Turn(dialog, speaker, []))
                labels.append([])
            turns[-1].keys.append(key)
            label = mapping.get(str(r["label"]), str(r["label"]))
            if label in wanted:
                labels[-1].append(label)
        for turn, found in zip(turns, labels):
            if found:
                counts = Counter(found)
                top = max(counts.values())
                turn.label = next(label for label in found if counts[label] == top)  # ties: the earliest
        dialogs[dialog] = turns
    return dialogs


def make_samples(dialogs: Mapping[str, list[Turn]], history: int) -> tuple[list[Sample], list[str]]:
    """Every labelled turn with ``history`` turns before it. -> (samples, the dialogues too short for any, as
    'dialog (N turns)')."""
    samples, short = [], []
    for dialog, turns in dialogs.items():
        if len(turns) <= history:
            short.append(f"{dialog} ({len(turns)} turn(s))")
            continue
        for t in range(history, len(turns)):
            target = turns[t]
            if target.label is not None:
                samples.append(Sample(dialog, target.keys[0], target.label, turns[t - history:t], target.speaker))
    return samples, short


# ------------------------------------------------------------------------------------------------ the model
class HierarchicalGRU(nn.Module):
    """utterance vectors -> turn vectors (GRU over a turn's utterances) -> dialogue state (GRU over the turns) ->
    class scores. See the module docstring."""

    def __init__(self, input_dim: int, num_classes: int, hidden: int = 256, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden)
        self.utterance_gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True,
                                    dropout=dropout if layers > 1 else 0.0)
        self.turn_gru = nn.GRU(hidden + 1, hidden, num_layers=layers, batch_first=True,
                               dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden, num_classes)
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_inv_std", torch.ones(input_dim))

    def forward(self, x: Tensor, turn_utts: Tensor, turn_lengths: Tensor, same_speaker: Tensor) -> Tensor:
        """x (N, D) utterance vectors; turn_utts (B, H, U) indices into x (padding: any index, masked by
        turn_lengths (B, H) >= 1); same_speaker (B, H) 0/1 -> (B, C) scores."""
        B, H, U = turn_utts.shape
        h = torch.relu(self.proj((x[turn_utts.reshape(-1)] - self.input_mean) * self.input_inv_std))
        packed = nn.utils.rnn.pack_padded_sequence(h.reshape(B * H, U, -1), turn_lengths.reshape(-1).cpu(),
                                                   batch_first=True, enforce_sorted=False)
        _, state = self.utterance_gru(packed)  # (layers, B*H, hidden)
        turns = torch.cat([state[-1].reshape(B, H, -1), same_speaker[..., None].to(state.dtype)], dim=-1)
        _, state = self.turn_gru(turns)
        return self.output(self.dropout(state[-1]))


@dataclass
class _Batches:
    """Samples as index tensors: turn_utts (S, H, U), turn_lengths (S, H), same_speaker (S, H), y (S,)."""

    turn_utts: Tensor
    turn_lengths: Tensor
    same_speaker: Tensor
    y: Tensor

    def take(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lengths = self.turn_lengths[idx]
        return self.turn_utts[idx][..., :int(lengths.max())], lengths, self.same_speaker[idx]


def _tensors(samples: Sequence[Sample], position: Mapping[str, int], names: Sequence[str], history: int) -> _Batches:
    longest = max(len(turn.keys) for s in samples for turn in s.context)
    utts = torch.zeros(len(samples), history, longest, dtype=torch.long)
    lengths = torch.zeros(len(samples), history, dtype=torch.long)
    same = torch.zeros(len(samples), history)
    index = {n: i for i, n in enumerate(names)}
    for i, s in enumerate(samples):
        for j, turn in enumerate(s.context):
            utts[i, j, :len(turn.keys)] = torch.tensor([position[k] for k in turn.keys])
            lengths[i, j] = len(turn.keys)
            same[i, j] = float(turn.speaker == s.speaker)
    y = torch.tensor([index[s.label] for s in samples], dtype=torch.long)
    return _Batches(utts, lengths, same, y)


# ------------------------------------------------------------------------------------------------ one fold
@torch.no_grad()
def _probabilities(model: HierarchicalGRU, x: Tensor, data: _Batches, idx: Tensor, batch: int = 512) -> Tensor:
    model.eval()
    return torch.cat([torch.softmax(model(x, *data.take(c)), dim=1) for c in idx.split(batch)])


def _train_fold(x: Tensor, data: _Batches, split: FoldSplit, train_utts: Tensor, names: Sequence[str],
                config: ConversationConfig, keys: Sequence[str], device: torch.device) -> FoldOutcome:
    """Train the model on ``split.train`` (sample positions), keep the epoch with the best valid UAR
    (:class:`~.runs.Selection`). -> its ``split.test`` class probabilities, which :func:`~.runs.run_folds` scores."""
    start = time.perf_counter()
    train, valid, test = (np.asarray(s, dtype=np.int64) for s in (split.train, split.valid, split.test))
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = HierarchicalGRU(x.shape[1], len(names), config.hidden, config.gru_layers, config.dropout).to(device)
    if config.standardize:
        used = x[train_utts]
        model.input_mean.copy_(used.mean(0))
        model.input_inv_std.copy_(1.0 / used.std(0, unbiased=False).clamp(min=1e-5))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    train_idx = torch.from_numpy(train)
    valid_idx, test_idx = torch.from_numpy(valid).to(device), torch.from_numpy(test).to(device)
    y = data.y
    selection, best_state = Selection("ua", hint="lower --lr"), None
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)].to(device)
        total = 0.0
        for batch in order.split(config.batch_size):
            loss = loss_fn(model(x, *data.take(batch)), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        selection.train_epoch(total / len(train_idx))
        if len(valid_idx) == 0:
            continue
        p = _probabilities(model, x, data, valid_idx).cpu().numpy()
        if selection.valid_epoch(epoch, fast_scores("categorical", p, y[valid_idx].cpu().numpy())):
            best_state = copy.deepcopy(model.state_dict())
    if best_state is not None:
        model.load_state_dict(best_state)
    return FoldOutcome(name=split.name, n_train=len(train), n_valid=len(valid), n_test=len(test),
                       best_epoch=selection.kept_epoch(config.epochs), epochs_run=config.epochs,
                       valid=selection.valid, history=selection.curves(), seconds=time.perf_counter() - start,
                       test_keys=[keys[n] for n in test.tolist()],
                       predictions=_probabilities(model, x, data, test_idx).cpu().numpy())


# ------------------------------------------------------------------------------------------------ the run
def _split(samples: Sequence[Sample], fold: Mapping, i: int, config: ConversationConfig) -> FoldSplit:
    """The samples of fold ``fold`` (the ``i``-th selected) by the split holding their target turn's first
    utterance; without valid samples, a seeded share of the training ones (:func:`~.runs.carve_valid`)."""
    where = {k: s for s in ("train", "valid", "test") for k in fold[s]}
    parts: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for n, s in enumerate(samples):
        side = where.get(s.key)
        if side is not None:
            parts[side].append(n)
    note = ""
    if not parts["valid"] and config.valid_fraction > 0 and parts["train"]:
        parts["train"], parts["valid"] = carve_valid(parts["train"], config.valid_fraction, config.seed, i)
        note = f" (valid = random {config.valid_fraction:.0%} of the training samples)"
    if not parts["train"] or not parts["test"]:
        raise ProbeError(f"{fold['name']}: no training ({len(parts['train'])}) or test ({len(parts['test'])}) sample")
    return FoldSplit(fold["name"], parts["train"], parts["valid"], parts["test"], note)


def _utterance_vectors(packed) -> Tensor:
    """(N, D): frame-level features averaged per utterance; utterance-level as they are."""
    if not packed.frame:
        return packed.x
    rows, segments, lengths = packed.frame_index(torch.arange(len(packed.keys)))
    sums = torch.zeros(len(packed.keys), packed.dim).index_add_(0, segments, packed.x[rows])
    return sums / lengths.clamp(min=1)[:, None].to(sums.dtype)


def _markdown(result: Mapping[str, Any]) -> str:
    from .report import corpus_name, summary_markdown

    conv, c = result["conversation"], result["config"]

    def pct(v):
        return "–" if v is None or v != v else f"{100 * v:.2f}"

    lines = [f"# Emotion prediction in conversation: {corpus_name(result['corpus'])} / {result['source']}", ""]
    if result.get("warnings"):
        lines += ["**WARNINGS:**", *(f"- **{w}**" for w in result["warnings"]), ""]
    lines += [f"- task: the emotion of a speaker's next turn from the previous {conv['history']} turns "
              f"(classes {', '.join(result['labels'])}); {conv['samples']} samples from {conv['dialogs']} "
              f"dialogues ({conv['turns']} turns)",
              f"- model: hierarchical GRU (utterance GRU over each turn, turn GRU over the history; "
              f"{c['gru_layers']} layers each, hidden {c['hidden']}, dropout {c['dropout']}), "
              f"{result['parameters']:,} parameters; Adam lr {c['lr']}, batch {c['batch_size']}, {c['epochs']} "
              f"epochs, best epoch by valid UAR, seed {c['seed']}",
              f"- features: `{result['features']}` ({result['granularity']}-level, dim {result['dim']}"
              + ("" if result.get("layer") is None else f", layer {result['layer']}") + ")"]
    for extra in result.get("concat") or []:
        lines.append(f"- concatenated with: `{extra['features']}` ({extra['granularity']}-level, dim {extra['dim']})")
    lines.append(f"- data: `{result['data']}` (protocol {result.get('protocol') or 'default'}, "
                 f"{len(result['folds'])} fold(s))")
    lines += ["", "| Fold | Train | Valid | Test | Best epoch | UAR | macro-F1 | WA | WF1 | UAR 95% CI |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in result["folds"]:
        ci = f.get("ci")
        lines.append(f"| {f['name']} | {f['n_train']} | {f['n_valid']} | {f['n_test']} | {f['best_epoch']} | "
                     + " | ".join(pct(f["test"].get(m)) for m in METRICS)
                     + (f" | [{pct(ci['low'])}, {pct(ci['high'])}] |" if ci else " | – |"))
    s = result["summary"]
    lines.append("| **mean ± std** | | | | | " + " | ".join(
        f"{pct(s[m]['mean'])} ± {pct(s[m]['std'])}" for m in METRICS) + " | |")
    lines += ["", "Percent; UAR = unweighted average recall (UA); std over folds is the population std.", "",
              summary_markdown(result), "", "![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)


def _classes(rows: Sequence[Mapping], classes: Sequence[str] | None, mapping: Mapping[str, str], where: Path
             ) -> list[str]:
    """The target emotions: ``classes``, else every (mapped) label of data.tsv; each must occur."""
    names = sorted(classes) if classes else sorted({mapping.get(r["label"], r["label"]) for r in rows} - {""})
    unknown = sorted(set(names) - {mapping.get(r["label"], r["label"]) for r in rows})
    if unknown:
        raise ProbeError(f"--classes {', '.join(unknown)}: no utterance of {where} carries them")
    if len(names) < 2:
        raise ProbeError(f"the conversation task needs at least two classes, got {names}")
    return names


@dataclass
class _Dialogues:
    """The dialogues as turns, the samples (labelled turns with enough history) and what was left out."""

    dialogs: dict[str, list[Turn]]
    samples: list[Sample]
    short: list[str]  # dialogues too short for any sample
    turns: int
    warnings: list[str]


def _dialogues(rows: Sequence[Mapping], names: list[str], mapping: Mapping[str, str], config: ConversationConfig,
               where: Path, log) -> _Dialogues:
    dialogs = build_turns(rows, names, mapping, str(where))
    samples, short = make_samples(dialogs, config.history)
    n_turns = sum(len(t) for t in dialogs.values())
    warnings = []
    if short:
        warnings.append(f"{len(short)} dialogue(s) have at most {config.history} turns and give no sample: "
                        + ", ".join(short[:10]) + (" ..." if len(short) > 10 else ""))
        log(f"conversation: warning: {warnings[-1]}")
    if not samples:
        raise ProbeError(f"no sample: no dialogue of {where} has a labelled turn after "
                         f"{config.history} turns (lower --history?)")
    log(f"conversation: {len(dialogs)} dialogues, {n_turns} turns, {len(samples)} samples (history "
        f"{config.history}), classes {names}: " + ", ".join(f"{k} {v}" for k, v in
                                                          sorted(Counter(s.label for s in samples).items())))
    return _Dialogues(dialogs, samples, short, n_turns, warnings)


@dataclass
class _Inputs:
    """The utterance vectors (N, D) on the device, the samples as index tensors, their targets, and the feature
    folder's description."""

    x: Tensor
    device: torch.device
    batches: _Batches
    targets: Targets
    position: dict[str, int]  # utterance key -> row of x
    info: dict[str, Any]


def _inputs(features, samples: list[Sample], names: list[str], config: ConversationConfig, layer, concat_features,
            concat_layer, device: str, log) -> _Inputs:
    from .features import load_sources
    from ..device import resolve_device

    keys = sorted({k for s in samples for turn in s.context for k in turn.keys})
    log(f"conversation: loading {len(keys)} feature files from {features}"
        + "".join(f" + {c}" for c in concat_features))
    packed, info = load_sources(features, keys, layer, concat_features, concat_layer)
    position = {k: i for i, k in enumerate(keys)}
    dev = resolve_device(device, error=ProbeError)
    x = _utterance_vectors(packed).to(dev)
    tensors = _tensors(samples, position, names, config.history)
    batches = _Batches(*(t.to(dev) for t in (tensors.turn_utts, tensors.turn_lengths, tensors.same_speaker,
                                              tensors.y)))
    targets = Targets("categorical", list(names), [s.key for s in samples], tensors.y.numpy())
    return _Inputs(x, dev, batches, targets, position, info)


def _fitter(inputs: _Inputs, samples: list[Sample], names: list[str], config: ConversationConfig):
    def fit(i: int, split: FoldSplit) -> FoldOutcome:
        position, device = inputs.position, inputs.device
        train_utts = torch.tensor(sorted({position[k] for n in split.train for t in samples[n].context
                                          for k in t.keys}), device=device)
        return _train_fold(inputs.x, inputs.batches, split, train_utts, names, config, inputs.targets.keys, device)

    return fit


def _result(config: ConversationConfig, fold_spec: Mapping, protocol: str | None, data_dir: Path, features,
            name: str | None, names: list[str], inputs: _Inputs, talk: _Dialogues, mapping: Mapping[str, str],
            outcomes: list[FoldOutcome], t0: float) -> dict[str, Any]:
    """results.json in the probe's format (task categorical) with a ``conversation`` block."""
    from .. import __version__
    from .runs import RESULTS_FORMAT, RESULTS_VERSION

    info, x = inputs.info, inputs.x
    n_params = sum(p.numel() for p in HierarchicalGRU(x.shape[1], len(names), config.hidden, config.gru_layers
                                                      ).parameters())
    return {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION, "corpus": fold_spec.get("corpus") or data_dir.name,
        "protocol": fold_spec.get("protocol", protocol), "speaker_independent": fold_spec.get("speaker_independent"),
        "task": "categorical", "loss": "ce", "headline": "ua",
        "head": {"type": "hierarchical-gru", "pooling": "gru", "hidden": config.hidden, "dropout": config.dropout},
        "targets": list(names), "labels": list(names), "source": name or Path(features).name,
        "features": str(features), "data": str(data_dir), "granularity": info["granularity"], "dim": int(x.shape[1]),
        "stored_layers": info["stored_layers"], "layer": info["layer"], "feature_settings": info["settings"],
        "concat": info.get("concat", []), "parameters": n_params, "config": asdict(config),
        "device": str(inputs.device),
        "conversation": {"history": config.history, "dialogs": len(talk.dialogs), "turns": talk.turns,
                         "samples": len(talk.samples), "short_dialogs": talk.short, "label_map": dict(mapping),
                         "sample_labels": dict(sorted(Counter(s.label for s in talk.samples).items()))},
        "folds": [o.entry() for o in outcomes],
        "summary": summarize([o.test for o in outcomes], ("wa", "ua", "wf1", "macro_f1")),
        "confusion": np.sum([o.test["confusion"] for o in outcomes], axis=0).tolist(),
        "warnings": talk.warnings, "notes": [], "audit": None,
        "timing": {"total_s": round(time.perf_counter() - t0, 3)},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "emotion2vec_version": __version__, "torch_version": torch.__version__,
    }


def run_conversation(features: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike | None,
                     config: ConversationConfig | None = None, protocol: str | None = None, layer=None,
                     concat_features: Sequence[str | os.PathLike] = (), concat_layer=None,
                     classes: Sequence[str] | None = None, label_map: str | None = None,
                     folds: str | None = None, name: str | None = None, fold_seed: int = 0,
                     device: str = "cpu", verbose: bool = True, threads: int | None = 1) -> dict[str, Any]:
    """Train and score the conversation model on every fold of ``data``; write the outputs to ``out`` (when
    given); return results.json's dict. ``classes``: the target emotions (default: every label of data.tsv after
    ``label_map``, "old=new,...", '' = not a target). ``threads``: torch CPU threads while training (default 1:
    the GRUs' small matrices only lose to thread synchronisation; None = torch's default).

    The steps: the corpus, its folds and the classes; the dialogues' turns and samples; the features; the folds in
    the shared fold loop (:func:`~.runs.run_folds`); results.json and the files (:func:`~.report.write_outputs`)."""
    from . import report
    from .corpora import parse_label_map
    from .probe import cpu_settings
    from .runs import pick_folds, read_inputs

    config = config or ConversationConfig()
    t0 = time.perf_counter()
    log = (lambda msg: print(msg, flush=True)) if verbose else (lambda msg: None)
    data_dir = Path(data)
    data_dir = data_dir.parent if data_dir.is_file() else data_dir
    rows, fold_spec = read_inputs(data_dir, protocol, fold_seed)
    selected = pick_folds(list(fold_spec["folds"]), folds)
    mapping = parse_label_map(label_map)
    names = _classes(rows, classes, mapping, data_dir / "data.tsv")
    talk = _dialogues(rows, names, mapping, config, data_dir / "data.tsv", log)
    inputs = _inputs(features, talk.samples, names, config, layer, concat_features, concat_layer, device, log)
    splits = [_split(talk.samples, f, i, config) for i, f in enumerate(selected)]
    with cpu_settings(threads):
        outcomes = run_folds(splits, _fitter(inputs, talk.samples, names, config), inputs.targets,
                             config.bootstrap, config.seed, log, "conversation", hint="lower --lr")
    result = _result(config, fold_spec, protocol, data_dir, features, name, names, inputs, talk, mapping, outcomes, t0)
    if out is not None:
        index = {s.key: n for n, s in enumerate(talk.samples)}
        report.write_outputs(out, result, prediction_records(outcomes, inputs.targets, index.__getitem__),
                             markdown=_markdown, title=f"{report.corpus_name(result['corpus'])} / {result['source']} "
                                                       f"(conversation)")
        log(f"conversation: wrote results.json, results.md, predictions.tsv, confusion.png to {out}")
    log(report.summary_markdown(result))
    return result
