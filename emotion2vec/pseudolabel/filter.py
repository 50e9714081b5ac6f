"""Which pseudo-labelled files are kept for training, and why every other one is not.

A file is kept when it was read, its label is one of the classes, its duration lies in [min, max], and its
confidence, margin and agreement (:mod:`.combine`) reach the thresholds. A per-class quota then keeps at most
``max_files_per_class`` files, or files up to ``max_hours_per_class`` hours, of each class: the most confident first
(ties by key), so that a class the models favour does not crowd out the others. Every rejected file gets all the
reasons that apply (``confidence 0.41 < 0.60; margin 0.05 < 0.20``).

The classes are ``labels`` when given, else every label of the models except ``other`` and ``unknown`` (they are no
emotion to learn: files predicted as such are rejected).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

from . import PseudoLabelError
from .combine import Utterance

__all__ = ["NOT_EMOTIONS", "FilterConfig", "select"]

#: labels of emotion2vec+ that name no emotion: not kept unless --labels asks for them
NOT_EMOTIONS = ("other", "unknown")


@dataclass
class FilterConfig:
    """The thresholds (fractions, seconds, hours); None switches a quota off."""

    labels: tuple[str, ...] | None = None
    min_confidence: float = 0.6
    min_margin: float = 0.2
    min_agreement: float = 0.75
    min_duration: float = 1.0
    max_duration: float = 30.0
    max_files_per_class: int | None = None
    max_hours_per_class: float | None = None

    def check(self) -> "FilterConfig":
        for name in ("min_confidence", "min_margin", "min_agreement"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise PseudoLabelError(f"--{name.replace('_', '-')} {value}: must lie in [0, 1]")
        if not (math.isfinite(self.min_duration) and self.min_duration >= 0):
            raise PseudoLabelError(f"--min-duration {self.min_duration}: must be >= 0")
        if not (self.max_duration > self.min_duration):
            raise PseudoLabelError(f"--max-duration {self.max_duration}: must be larger than --min-duration "
                                   f"{self.min_duration}")
        if self.max_files_per_class is not None and self.max_files_per_class < 1:
            raise PseudoLabelError(f"--max-files-per-class {self.max_files_per_class}: must be >= 1")
        if self.max_hours_per_class is not None and not (self.max_hours_per_class > 0):
            raise PseudoLabelError(f"--max-hours-per-class {self.max_hours_per_class}: must be > 0")
        if self.labels is not None:
            if not self.labels:
                raise PseudoLabelError("--labels: give at least one class")
            if len(set(self.labels)) != len(self.labels):
                raise PseudoLabelError(f"--labels {','.join(self.labels)}: give each class once")
        return self

    def classes(self, model_labels: Sequence[str]) -> list[str]:
        """The kept classes, in the models' label order; a class the models do not predict is refused."""
        if self.labels is None:
            classes = [name for name in model_labels if name not in NOT_EMOTIONS]
            if not classes:
                raise PseudoLabelError(f"the models predict only {', '.join(model_labels)}: give --labels")
            return classes
        unknown = [name for name in self.labels if name not in model_labels]
        if unknown:
            raise PseudoLabelError(f"--labels: {', '.join(unknown)} not among the models' labels "
                                   f"({', '.join(model_labels)})")
        return [name for name in model_labels if name in self.labels]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels) if self.labels is not None else None
        return d


def _reasons(u: Utterance, config: FilterConfig, classes: Sequence[str]) -> list[str]:
    if u.error is not None:
        return [f"error: {u.error}"]
    out = []
    if u.label not in classes:
        out.append(f"label {u.label} not among the classes")
    if u.duration < config.min_duration:
        out.append(f"duration {u.duration:.2f} s < {config.min_duration:g} s")
    if u.duration > config.max_duration:
        out.append(f"duration {u.duration:.2f} s > {config.max_duration:g} s")
    if u.confidence < config.min_confidence:
        out.append(f"confidence {u.confidence:.3f} < {config.min_confidence:g}")
    if u.margin < config.min_margin:
        out.append(f"margin {u.margin:.3f} < {config.min_margin:g}")
    if u.agreement < config.min_agreement:
        out.append(f"agreement {u.agreement:.3f} < {config.min_agreement:g}")
    return out


def select(utterances: Sequence[Utterance], config: FilterConfig,
           classes: Sequence[str]) -> tuple[list[Utterance], list[tuple[Utterance, str]]]:
    """(kept files in input order, [(rejected file, reasons)] in input order)."""
    passing: dict[str, list[Utterance]] = {c: [] for c in classes}
    rejected: dict[str, str] = {}
    for u in utterances:
        reasons = _reasons(u, config, classes)
        if reasons:
            rejected[u.key] = "; ".join(reasons)
        else:
            passing[u.label].append(u)
    kept_keys: set[str] = set()
    for label, group in passing.items():
        group = sorted(group, key=lambda u: (-u.confidence, u.key))
        seconds = 0.0
        for n, u in enumerate(group):
            over_files = config.max_files_per_class is not None and n >= config.max_files_per_class
            over_hours = (config.max_hours_per_class is not None
                          and seconds + u.duration > config.max_hours_per_class * 3600)
            if over_files or over_hours:
                quota = (f"{config.max_files_per_class} files" if over_files
                         else f"{config.max_hours_per_class:g} h")
                rejected[u.key] = f"over the quota of {label} ({quota})"
                continue
            kept_keys.add(u.key)
            seconds += u.duration
    kept = [u for u in utterances if u.key in kept_keys]
    return kept, [(u, rejected[u.key]) for u in utterances if u.key in rejected]
