"""The corpora ``emotion2vec prepare`` knows: every preparer in one list (:data:`PREPARERS`, the order of
``prepare --help``), their names and aliases, the default protocol, and :func:`prepare_corpus`, which runs one with
the options every corpus takes (``--label-map``, ``--exclude``) and checks what it returns.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

from .aesdd import prepare_aesdd
from .base import CORPORA, CorpusError, _listing, log, parse_label_map
from .cafe import prepare_cafe
from .crema_d import prepare_crema_d
from .emobox import prepare_emobox
from .emodb import prepare_emodb
from .emovo import prepare_emovo
from .folder import prepare_folder
from .iemocap import prepare_iemocap
from .m3ed import prepare_m3ed
from .meld import prepare_meld
from .mosi_mosei import prepare_mosei, prepare_mosi
from .msp_podcast import prepare_msp_podcast
from .ravdess import prepare_ravdess, prepare_ravdess_song
from .resd import prepare_resd
from .savee import prepare_savee
from .shemo import prepare_shemo
from .subesco import prepare_subesco
from .urdu import prepare_urdu

#: every corpus preparer (each carries its :class:`~.base.CorpusSpec` as ``spec``), in the order ``prepare --help``
#: lists them
PREPARERS = (prepare_iemocap, prepare_meld, prepare_ravdess, prepare_ravdess_song, prepare_savee, prepare_emodb,
             prepare_emovo, prepare_cafe, prepare_subesco, prepare_shemo, prepare_urdu, prepare_aesdd, prepare_resd,
             prepare_m3ed, prepare_mosi, prepare_mosei, prepare_msp_podcast, prepare_crema_d, prepare_folder,
             prepare_emobox)
CORPORA.update((fn.spec.name, fn.spec) for fn in PREPARERS)

ALIASES = {"ravdess-speech": "ravdess", "cmu-mosi": "mosi", "cmu-mosei": "mosei", "emo-db": "emodb",
           "msp": "msp-podcast", "msppodcast": "msp-podcast", "cremad": "crema-d", "crema": "crema-d"}


def default_protocol(corpus: str, rows: list[Mapping] | None = None) -> str:
    """The paper's protocol for ``corpus``; for ``folder``: speaker-kfold with >= 4 known speakers, else
    random-kfold."""
    spec = CORPORA[corpus_name(corpus)]
    if spec.default_protocol != "auto":
        return spec.default_protocol
    speakers = {str(r.get("speaker", "")) for r in (rows or [])}
    return "speaker-kfold" if "" not in speakers and len(speakers) >= 4 else "random-kfold"


def _apply_label_map(rows: list[dict], mapping: Mapping[str, str], corpus: str) -> list[dict]:
    if not mapping:
        return rows
    unused = sorted(set(mapping) - {r["label"] for r in rows})
    if unused:
        raise CorpusError(f"{corpus}: --label-map names label(s) {unused} that do not occur; labels are "
                          f"{sorted({r['label'] for r in rows})}")
    out, dropped = [], Counter()
    for r in rows:
        new = mapping.get(r["label"], r["label"])
        if new == "":
            dropped[r["label"]] += 1
            continue
        out.append({**r, "label": new})
    if dropped:
        log.info("%s: dropped by --label-map: %s", corpus, ", ".join(f"{k} ({v})" for k, v in sorted(dropped.items())))
    if not out:
        raise CorpusError(f"{corpus}: --label-map dropped every row")
    return out


def prepare_corpus(corpus: str, root, label_map=None, exclude: Iterable[str] | None = None, **options) -> list[dict]:
    """Run the preparer of ``corpus`` with its ``options``, then ``label_map`` ("old=new,..."; for ``folder`` it is
    applied to folder names inside the preparer) and ``exclude`` (keys to leave out; unknown keys raise)."""
    name = corpus_name(corpus)
    spec = CORPORA[name]
    bad = sorted(k for k, v in options.items() if v not in (None, False) and k not in spec.options)
    if bad:
        raise CorpusError(f"{name}: option(s) {', '.join('--' + b.replace('_', '-') for b in bad)} do not apply to "
                          f"this corpus")
    kwargs = {k: v for k, v in options.items() if k in spec.options and v not in (None, False)}
    if name == "folder":
        rows = spec.prepare(root, label_map=label_map, **kwargs)
    else:
        rows = spec.prepare(root, **kwargs)
        rows = _apply_label_map(rows, parse_label_map(label_map), name)
    if exclude:
        exclude = {e.strip() for e in exclude if e.strip()}
        keys = {r["key"] for r in rows}
        unknown = sorted(exclude - keys)
        if unknown:
            raise CorpusError(_listing(f"{name}: --exclude names {len(unknown)} key(s) not in the corpus:", unknown))
        rows = [r for r in rows if r["key"] not in exclude]
        log.info("%s: excluded %d key(s) on request", name, len(exclude))
        if not rows:
            raise CorpusError(f"{name}: --exclude removed every row")
    labels = Counter(r["label"] for r in rows)
    if len(labels) < 2:
        found = ", ".join(f"{k} ({v})" for k, v in sorted(labels.items()))
        raise CorpusError(f"{name}: {len(rows)} utterance(s) under {root} carry a single label: {found}. Emotion "
                          f"recognition needs at least two labels; is --root one folder too deep? Expected layout: "
                          f"{spec.layout}")
    return rows


def corpus_name(corpus: str) -> str:
    """The registered name of ``corpus``, whatever its case and spelling (``URDU``, ``cmu-mosi``, ``ravdess_song``)."""
    name = str(corpus).strip().lower().replace("_", "-")
    name = ALIASES.get(name, name)
    if name not in CORPORA:
        raise CorpusError(f"unknown corpus {corpus!r}; choose from {', '.join(CORPORA)}")
    return name
