"""Downstream evaluation: corpora -> ``data.tsv`` + folds (:mod:`.corpora`, :mod:`.prepare`, :mod:`.folds`), frozen
features -> per-fold heads (:mod:`.features`, :mod:`.heads`, :mod:`.training`, :mod:`.probe`), scores and reports
(:mod:`.metrics`, :mod:`.report`)."""

from ..errors import Emotion2VecError

__all__ = ["ProbeError", "DEFAULT_LR", "SELECT_METRICS"]

#: optimiser -> default learning rate of the probe (light constants: the CLI reads them without importing torch)
DEFAULT_LR = {"rmsprop": 5e-4, "adam": 1e-3}
#: validation metrics that can pick a fold's best epoch
SELECT_METRICS = ("wa", "ua", "wf1", "macro_f1", "loss")


class ProbeError(Emotion2VecError, RuntimeError):
    """Inputs or options a probe cannot run with; the message names the fold, key or value."""
