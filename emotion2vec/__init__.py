"""emotion2vec: self-supervised pretraining, feature extraction and probing of speech emotion representations."""

__version__ = "0.1.0"

from .config import PRESETS, Emotion2VecConfig, preset  # noqa: E402
from .models import Emotion2VecModel  # noqa: E402

__all__ = ["Emotion2VecConfig", "Emotion2VecModel", "PRESETS", "preset", "Emotion2Vec", "fairseq_user_dir", "__version__"]


def __getattr__(name: str):  # lazy: the extraction API pulls in audio I/O
    if name == "Emotion2Vec":
        from .api import Emotion2Vec

        return Emotion2Vec
    raise AttributeError(name)


def fairseq_user_dir() -> str:
    """Path to pass as ``common.user_dir`` to ``fairseq-hydra-train``."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "_fairseq" / "emotion2vec_fairseq")
