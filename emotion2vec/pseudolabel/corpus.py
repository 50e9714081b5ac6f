"""The kept pseudo-labels as a corpus that ``emotion2vec probe`` and ``emotion2vec finetune`` read.

``data.tsv`` (:mod:`emotion2vec.io.manifests`) has a row per kept file: ``label`` (the combined label), ``votes``
(the combined distribution over the classes as ``label:share`` pairs: the soft label of ``--task soft``), an empty
``speaker`` and ``gender`` (unknown), the file's ``duration``, its ``confidence``, ``margin`` and ``agreement``, and
``source`` = ``pseudo``.

With a labelled training set (``train_with``, e.g. the seed set) and a labelled dev set (``dev``), the corpus holds
all three, told apart by ``source`` (``pseudo`` / ``labelled`` / ``dev``), and a ``split`` column: the pseudo-labelled
and labelled files are ``train`` except a seeded, label-stratified ``valid_fraction`` of the labelled ones (``valid``:
the epoch is chosen on true labels), and the dev files are ``test``. ``folds.json`` then holds that one fold (protocol
``original``), so the fine-tuned model is scored on the dev set, which is never pseudo-labelled.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Mapping, Sequence

from ..io.manifests import format_votes
from . import PseudoLabelError
from .combine import Utterance

__all__ = ["votes", "pseudo_rows", "corpus_rows", "check_disjoint"]


def votes(u: Utterance, labels: Sequence[str], classes: Sequence[str]) -> str:
    """The ``votes`` cell: ``u``'s combined probabilities of ``classes``, renormalised, 4 decimals, zeros left out."""
    shares = {c: float(u.probabilities[labels.index(c)]) for c in classes}
    total = sum(shares.values())
    rounded = {c: round(v / total, 4) for c, v in shares.items()}
    return format_votes({c: v for c, v in rounded.items() if v > 0})


def pseudo_rows(kept: Sequence[Utterance], labels: Sequence[str], classes: Sequence[str]) -> list[dict]:
    return [{"key": u.key, "path": u.path, "label": u.label, "speaker": "", "gender": "", "duration": u.duration,
             "votes": votes(u, labels, classes), "confidence": f"{u.confidence:.4f}", "margin": f"{u.margin:.4f}",
             "agreement": f"{u.agreement:.4f}", "source": "pseudo"} for u in kept]


def _resolved(path: str) -> str:
    return str(Path(path).resolve())


def check_disjoint(inputs: Sequence[tuple[str, str]], train_with: Sequence[Mapping] | None,
                   dev: Sequence[Mapping] | None) -> None:
    """The inputs to label, the labelled training rows and the dev rows share no file and no key (the dev set is
    never pseudo-labelled, a labelled file is not labelled twice). ``inputs``: (key, path) pairs."""
    sets = [("--input", [(k, p) for k, p in inputs])]
    if train_with is not None:
        sets.append(("--train-with", [(r["key"], r["path"]) for r in train_with]))
    if dev is not None:
        sets.append(("--score-on", [(r["key"], r["path"]) for r in dev]))
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            (a, rows_a), (b, rows_b) = sets[i], sets[j]
            paths_b = {_resolved(p) for _, p in rows_b}
            shared = [p for _, p in rows_a if _resolved(p) in paths_b]
            if shared:
                raise PseudoLabelError(f"{len(shared)} file(s) of {b} are also in {a}, e.g. {shared[0]}: "
                                       + ("the dev set is never pseudo-labelled" if b == "--score-on" and a == "--input"
                                          else "each file belongs to one set"))
            keys_b = {k for k, _ in rows_b}
            clash = [k for k, _ in rows_a if k in keys_b]
            if clash:
                raise PseudoLabelError(f"key {clash[0]!r} names a file of {a} and another of {b} ({len(clash)} such "
                                       f"key(s)): give the sets distinct keys")


def corpus_rows(pseudo: Sequence[dict], train_with: Sequence[Mapping] | None, dev: Sequence[Mapping] | None,
                valid_fraction: float = 0.2, seed: int = 0) -> list[dict]:
    """data.tsv rows: the pseudo-labelled ones, and with ``dev`` the labelled and dev rows with a ``split`` (see the
    module docstring)."""
    if dev is None:
        if train_with is not None:
            raise PseudoLabelError("--train-with needs --score-on: the corpus then holds one fold (train: the pseudo "
                                   "and labelled files, test: the dev set)")
        return [dict(r) for r in pseudo]
    if not 0.0 <= valid_fraction < 1.0:
        raise PseudoLabelError(f"--valid-fraction {valid_fraction}: must lie in [0, 1)")
    labelled = [dict(r) for r in (train_with or [])]
    valid: set[str] = set()
    by_label: dict[str, list[str]] = {}
    for r in labelled:
        by_label.setdefault(str(r["label"]), []).append(str(r["key"]))
    rng = random.Random(f"pseudo-label-valid-{seed}")
    for label in sorted(by_label):
        keys = sorted(by_label[label])
        rng.shuffle(keys)
        valid.update(keys[:int(round(valid_fraction * len(keys)))] if len(keys) > 1 else [])
    drop = ("split", "fold")  # the labelled sets' own partitions do not apply here
    rows = [{**dict(r), "split": "train"} for r in pseudo]
    rows += [{**{k: v for k, v in r.items() if not k.startswith(drop)}, "source": "labelled",
              "split": "valid" if r["key"] in valid else "train"} for r in labelled]
    rows += [{**{k: v for k, v in r.items() if not k.startswith(drop)}, "source": "dev", "split": "test"}
             for r in dev]
    return rows
