"""Downstream evaluation: corpora -> ``data.tsv`` + folds (:mod:`.corpora`, :mod:`.prepare`, :mod:`.folds`) and
their leakage audit (:mod:`.audit`), frozen features -> per-fold heads (:mod:`.features`, :mod:`.tasks`,
:mod:`.targets`, :mod:`.heads`, :mod:`.losses`, :mod:`.training`, :mod:`.probe`), emotion prediction in
conversation (:mod:`.conversation`), scores and reports (:mod:`.metrics`, :mod:`.report`)."""

from ..errors import Emotion2VecError

__all__ = ["ProbeError", "DEFAULT_LR", "SELECT_METRICS"]

#: optimiser -> default learning rate of the probe (light constants: the CLI reads them without importing torch)
DEFAULT_LR = {"rmsprop": 5e-4, "adam": 1e-3, "adamw": 1e-3}
#: validation metrics that can pick a fold's best epoch (which apply to which task: tasks.TASK_SELECT_METRICS)
SELECT_METRICS = ("wa", "ua", "wf1", "macro_f1", "ml_macro_f1", "micro_f1", "ccc", "mae", "loss")


class ProbeError(Emotion2VecError, RuntimeError):
    """Inputs or options a probe cannot run with; the message names the fold, key or value."""
