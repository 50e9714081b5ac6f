"""Torch-only model code: the encoder (:class:`Emotion2VecModel`) and its components."""

from .components import alibi_bias, alibi_slopes
from .model import ContextEncoder, EncoderOutput, Emotion2VecModel, FeatureOutput, MaskInfo

__all__ = ["Emotion2VecModel", "ContextEncoder", "EncoderOutput", "FeatureOutput", "MaskInfo", "alibi_bias",
           "alibi_slopes"]
