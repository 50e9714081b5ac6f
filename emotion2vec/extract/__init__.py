"""Feature extraction: input discovery (:mod:`.inputs`), feature backends (:mod:`.backends`), the batching engine
(:mod:`.engine`), the resumable run that writes ``.npy`` files (:mod:`.run`) and the reader of its output
(:mod:`.store`).

Layer numbering everywhere: block outputs in order, prenet blocks first (emotion2vec base: 4 prenet + 8 main = 12
layers, 0..11); ``-1`` is the last block, whose output is the model's final feature (what the official script
returns).
"""

from ..errors import Emotion2VecError

__all__ = ["ExtractionError", "DTYPE_NAMES"]

#: compute dtypes of extraction (outputs are always float32)
DTYPE_NAMES = ("float32", "bfloat16", "float16")


class ExtractionError(Emotion2VecError, RuntimeError):
    """Bad extraction input or option; the message names the file or value."""
