"""The encoder (:class:`Emotion2VecModel`), its components and configuration, checkpoint reading, the fbank baseline.

Submodules are imported on first use, so that ``emotion2vec.models.config`` can be read without torch.
"""

__all__ = ["Emotion2VecModel", "Emotion2VecConfig", "ConfigError", "PRESETS", "preset", "ContextEncoder",
           "EncoderOutput", "FeatureOutput", "MaskInfo", "alibi_slopes"]

_WHERE = {"alibi_slopes": "components", "Emotion2VecConfig": "config", "ConfigError": "config", "PRESETS": "config",
          "preset": "config"}


def __getattr__(name: str):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_WHERE.get(name, 'encoder')}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
