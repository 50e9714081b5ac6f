"""emotion2vec: self-supervised pretraining, feature extraction and evaluation of speech emotion representations.

The package follows the data flow::

    io/          audio reading and resampling, atomic writes, every list format (manifests)
    models/      the encoder, its configuration, checkpoints in every supported layout, the fbank baseline
    pretrain/    the distillation objective, its data and masks, initialisation, the fairseq plugin
    extract/     input discovery, feature backends, the batching engine, resumable runs, the feature store
    downstream/  corpora, folds, probes, metrics, reports
    recognize/   classifier heads and ``emotion2vec predict``
    pseudolabel/ the data engine: pseudo-labels combined over models and windows, filtered into a training set
    distributed.py  sharded runs under torchrun (extract, predict, pseudo-label)
    demo/        the synthetic corpus and ``make demo``
    api.py       ``Emotion2Vec.from_checkpoint(path).extract(wav, sample_rate)``
    cli/         the ``emotion2vec`` command

Importing the package is cheap (nothing heavy is imported until used), so ``emotion2vec --help`` answers at once.
"""

__version__ = "0.1.0"

__all__ = ["Emotion2Vec", "Emotion2VecConfig", "Emotion2VecModel", "PRESETS", "preset", "fairseq_user_dir",
           "__version__"]

_LAZY = {
    "Emotion2Vec": ("emotion2vec.api", "Emotion2Vec"),
    "Emotion2VecConfig": ("emotion2vec.models.config", "Emotion2VecConfig"),
    "PRESETS": ("emotion2vec.models.config", "PRESETS"),
    "preset": ("emotion2vec.models.config", "preset"),
    "Emotion2VecModel": ("emotion2vec.models.encoder", "Emotion2VecModel"),
    "fairseq_user_dir": ("emotion2vec.pretrain", "fairseq_user_dir"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'emotion2vec' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
