"""argparse ``type=`` functions of the workflow options: each refuses a bad value naming it (argparse prints the
message with the option and exits 2). Plain Python: the parsers import them without torch."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "decay_factor", "fractions_list", "seeds_list", "EMBEDDING_COLOURS"]

#: what an embedding map can be coloured by (emotion2vec.analysis.embedding.EMBEDDING_COLOURS, which a test compares)
EMBEDDING_COLOURS = ("label", "arousal", "valence", "speaker", "gender", "corpus")


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def decay_factor(text: str) -> float:
    """A per-epoch learning-rate factor in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: the factor applied after every epoch must lie in (0, 1]")
    return value


def fractions_list(text: str) -> str:
    """Comma-separated fractions in (0, 1] (kept as text: the sweep parses it again)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers in (0, 1]") from None
    bad = [v for v in values if not 0.0 < v <= 1.0]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: every fraction must lie in (0, 1]"
                                         + (f", not {', '.join(f'{v:g}' for v in bad)}" if bad else ""))
    return text


def seeds_list(text: str) -> str:
    """Comma-separated integers (kept as text)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: no seeds")
    return text
