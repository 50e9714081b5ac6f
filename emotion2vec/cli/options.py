"""Option values checked where they are parsed: argparse ``type=`` validators every command uses alike.

A bad value stops the command before any work with argparse's usage line and ``argument --lr: must be > 0, got
-1`` (exit 2), never later as a traceback or a silently ignored value. Import-light (no torch, no numpy): the
parsers stay instant.

>>> parser.add_argument("--lr", type=positive_float)
>>> parser.add_argument("--num-workers", type=non_negative_int, default=1)
>>> parser.add_argument("--folds", type=unique_list("fold"))
>>> parser.add_argument("--device", type=device(auto=True), default="auto")
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Callable

__all__ = ["positive_float", "non_negative_float", "finite_float", "fraction", "probability", "decay_factor",
           "positive_int", "non_negative_int", "max_tokens", "int_at_least", "float_range", "unique_list",
           "fractions_list", "seeds_list", "layer_list", "layer_choice", "device", "preset_name", "DEVICE_PATTERN", "EMBEDDING_COLOURS"]

#: what an embedding map can be coloured by (emotion2vec.analysis.embedding.EMBEDDING_COLOURS, which a test compares)
EMBEDDING_COLOURS = ("label", "arousal", "valence", "speaker", "gender", "corpus")

#: devices a command can be given (availability is checked when the command runs)
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(str(text).strip())
    except ValueError:
        raise _bad(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise _bad(f"must be a finite number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (NaN and inf refused)."""
    return _number(text, float)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, scales, seconds)."""
    value = _number(text, float)
    if not value > 0:
        raise _bad(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (weight decay, thresholds)."""
    value = _number(text, float)
    if value < 0:
        raise _bad(f"must be >= 0, got {text}")
    return value


def float_range(low: float, high: float, low_open: bool = False, high_open: bool = True) -> Callable[[str], float]:
    """A finite number in [low, high) (the brackets as given)."""
    shown = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(text: str) -> float:
        value = _number(text, float)
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            raise _bad(f"must lie in {shown}, got {text}")
        return value

    check.__name__ = f"number in {shown}"
    return check


#: [0, 1): shares of a set (valid fraction), dropout, momentum, label smoothing, beta
fraction = float_range(0.0, 1.0)
#: [0, 1]
probability = float_range(0.0, 1.0, high_open=False)
#: (0, 1]: a learning-rate factor applied after every epoch
decay_factor = float_range(0.0, 1.0, low_open=True, high_open=False)


def int_at_least(minimum: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise _bad(f"must be >= {minimum}, got {text}")
        return value

    check.__name__ = f"integer >= {minimum}"
    return check


#: counts of things (epochs, batch size, hidden units, speakers)
positive_int = int_at_least(1)
#: worker processes, resamples, updates (0 = none)
non_negative_int = int_at_least(0)
#: padded samples per batch: at least one second of 16 kHz audio
max_tokens = int_at_least(16000)


def unique_list(what: str = "item", allowed: Callable[[], list[str]] | None = None) -> Callable[[str], str]:
    """A comma-separated list without empty or repeated items (``fold1,fold1`` would train and count a fold twice);
    with ``allowed`` (called when a value is checked) every item must be one of its names. -> the list re-joined
    with commas."""

    def check(text: str) -> str:
        items = [s.strip() for s in str(text).split(",")]
        if not any(items):
            raise _bad(f"give at least one {what} (a comma-separated list), got {text!r}")
        if "" in items:
            raise _bad(f"an empty {what} in {text!r}")
        twice = sorted({s for s in items if items.count(s) > 1})
        if twice:
            raise _bad(f"{text!r} names {what} {', '.join(twice)} twice")
        if allowed is not None:
            known = list(allowed())
            unknown = [s for s in items if s not in known]
            if unknown:
                raise _bad(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
        return ",".join(items)

    check.__name__ = f"list of {what}s"
    return check


def _checked_list(what: str, item: Callable[[str], float | int]) -> Callable[[str], str]:
    """:func:`unique_list` whose every item passes ``item`` (kept as text: the sweep parses it again)."""
    unique = unique_list(what)

    def check(text: str) -> str:
        text = unique(text)
        for s in text.split(","):
            try:
                item(s)
            except argparse.ArgumentTypeError as e:
                raise _bad(f"{what} {s}: {e}") from None
        return text

    check.__name__ = f"list of {what}s"
    return check


#: label-efficiency shares, each in (0, 1]
fractions_list = _checked_list("fraction", float_range(0.0, 1.0, low_open=True, high_open=False))
#: seeds, integers
seeds_list = _checked_list("seed", lambda s: _number(s, int))


def layer_list(text: str) -> str:
    """``--layers`` of extraction and export: ``all`` or block indices (``-1``, ``0,4,8``, ``-2,-1``), none twice."""
    text = str(text).strip()
    if text.lower() == "all":
        return "all"
    items = [s.strip() for s in text.split(",")]
    try:
        values = [int(s) for s in items]
    except ValueError:
        raise _bad(f"expected 'all' or comma-separated block indices such as -1 or 0,4,8, got {text!r}") from None
    twice = sorted({v for v in values if values.count(v) > 1})
    if twice:
        raise _bad(f"{text!r} names layer(s) {', '.join(map(str, twice))} twice")
    return ",".join(map(str, values))


def layer_choice(text: str) -> str:
    """``--layer`` of the downstream commands: a block index, ``a,b,c`` (their average, none twice), ``mean`` or
    ``weighted``."""
    text = str(text).strip()
    if text.lower() in ("mean", "all", "weighted"):
        return text.lower()
    try:
        [int(s) for s in text.split(",")]
    except ValueError:
        raise _bad(f"expected a block index, 'a,b,c', 'mean' or 'weighted', got {text!r}") from None
    return layer_list(text)


def device(auto: bool = False) -> Callable[[str], str]:
    """cpu, cuda, cuda:N (also mps, xpu[:N]), and ``auto`` where the command chooses."""

    def check(text: str) -> str:
        name = str(text).strip().lower()
        if (auto and name == "auto") or DEVICE_PATTERN.match(name):
            return name
        raise _bad(f"unknown device {text!r}; give {'auto, ' if auto else ''}cpu, cuda or cuda:N")

    check.__name__ = "device"
    return check


def preset_name(text: str) -> str:
    """An architecture preset of :data:`emotion2vec.models.config.PRESETS`."""
    from ..models.config import PRESETS

    if text not in PRESETS:
        raise _bad(f"unknown preset {text!r}; choose from {', '.join(PRESETS)}")
    return text
