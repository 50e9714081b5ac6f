"""Feature extraction: input discovery (:mod:`.inputs`), feature backends (:mod:`.backends`), the batching engine
(:mod:`.engine`), the resumable run that writes ``.npy`` files (:mod:`.run`), the reader of its output
(:mod:`.store`), and transcripts embedded by a text model into the same format (:mod:`.text`).

Layer numbering everywhere: block outputs in order, prenet blocks first (emotion2vec base: 4 prenet + 8 main = 12
layers, 0..11); ``-1`` is the last block, whose output is the model's final feature (what the official script
returns).
"""

from ..errors import Emotion2VecError

__all__ = ["ExtractionError", "DTYPE_NAMES", "GRANULARITIES", "SEQUENCE_GRANULARITIES"]

#: compute dtypes of extraction (outputs are always float32); int8: the Transformer's linear layers in int8 on a
#: CPU (emotion2vec models; :mod:`emotion2vec.models.inference`)
DTYPE_NAMES = ("float32", "bfloat16", "float16", "int8")
#: what one input becomes: frame (T, D); utterance (D,) = mean over frames; tokens (E, D) = the outputs at the E
#: utterance-token positions (emotion2vec checkpoints with extra tokens)
GRANULARITIES = ("frame", "utterance", "tokens")
#: granularities stored as a sequence of rows per input (index.tsv's ``frames`` counts them)
SEQUENCE_GRANULARITIES = ("frame", "tokens")


class ExtractionError(Emotion2VecError, RuntimeError):
    """Bad extraction input or option; the message names the file or value."""
