"""Emotion recognition with a classifier model (emotion2vec+ or a model fine-tuned here): the recogniser
(:mod:`.recognizer`) and the ``emotion2vec predict`` run over files, folders and lists (:mod:`.run`)."""

from ..errors import Emotion2VecError

__all__ = ["RecognitionError"]


class RecognitionError(Emotion2VecError, ValueError):
    """A model without a classifier, or an option recognition cannot honour; the message names it."""
