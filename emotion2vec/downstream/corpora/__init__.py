"""Corpus preparers: walk a corpus as distributed and return ``data.tsv`` rows (see :mod:`emotion2vec.io.manifests`).

One module per corpus (or corpus family: :mod:`.ravdess` speech and song, :mod:`.mosi_mosei`) holds its expected
layout, its parser and its default protocol together: every preparer is ``prepare_<corpus>(root, **options) ->
list[dict]`` with a ``@corpus_spec`` line above it (:mod:`.base`) giving its protocol, fold options and expected
layout (``--help``). :mod:`.registry` lists the preparers (:data:`CORPORA`) and runs one (:func:`prepare_corpus`).

Rows are sorted by key; each has ``key, path, label, speaker, gender, duration`` (+ ``channel``, ``split``,
``session`` or ``foldN`` where the corpus has them, and what a corpus has beyond one label: ``votes`` (raters'
categorical votes: IEMOCAP, MSP-Podcast, CREMA-D), ``arousal`` / ``valence`` / ``dominance`` (IEMOCAP,
MSP-Podcast) or ``sentiment`` (CMU-MOSI / MOSEI) scaled to [0, 1], ``text`` (MELD, MOSI / MOSEI, CREMA-D, and
IEMOCAP / MSP-Podcast where their transcripts are present), ``dialog`` / ``start`` / ``end`` (IEMOCAP: the
dialogue and the utterance's time in it, seconds, for the conversation task)).

Policy: known variants of a corpus's layout are accepted (Kaggle SAVEE, CaFE's Neutre folder and mangled accents,
MELD's known broken clips, ...); anything else that does not fit -- a file name that does not parse, an unknown
label, a missing audio file -- is collected and reported in ONE :class:`CorpusError` listing the files (the first
20 and a count), never silently dropped. Deliberate skips (MELD's broken clips, MOSI/MOSEI neutral segments,
IEMOCAP labels outside the 4 classes) are logged on the ``emotion2vec.downstream`` logger.
"""

from .base import CorpusError, CorpusSpec, canonical_label, parse_label_map
from .base import _pyav_available  # noqa: F401  (the media check MELD's preparer looks up here when it runs)
from .registry import ALIASES, CORPORA, PREPARERS, corpus_name, default_protocol, prepare_corpus
from .aesdd import prepare_aesdd
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

__all__ = ["CorpusError", "CorpusSpec", "CORPORA", "PREPARERS", "ALIASES", "canonical_label", "corpus_name",
           "prepare_corpus", "default_protocol", "parse_label_map"] + [
    "prepare_iemocap", "prepare_meld", "prepare_ravdess", "prepare_ravdess_song", "prepare_savee", "prepare_emodb",
    "prepare_emovo", "prepare_cafe", "prepare_subesco", "prepare_shemo", "prepare_urdu", "prepare_aesdd",
    "prepare_resd", "prepare_m3ed", "prepare_mosi", "prepare_mosei", "prepare_msp_podcast", "prepare_crema_d",
    "prepare_folder", "prepare_emobox"]
