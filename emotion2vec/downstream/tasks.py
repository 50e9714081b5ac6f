"""What a downstream run trains: the task, its losses, the head's output layer and pooling, and which of them go
together. Plain Python (the CLI reads it to build its parser without importing torch).

Tasks (targets from ``data.tsv``, see :mod:`.targets`):

``categorical``  one class per utterance, the ``label`` column. Losses ``ce`` (cross-entropy, optional label
                 smoothing), ``cb-ce`` (class-balanced cross-entropy, Cui et al.: class j weighs
                 (1 - beta) / (1 - beta^n_j) for n_j training utterances). Selection by valid UA (default).
``soft``         the raters' vote distribution (``votes`` column). Losses ``soft-ce`` (cross-entropy against the
                 distribution, optional label smoothing), ``cb-ce`` (the same, class-balanced with n_j = the
                 training utterances' summed vote shares). Selection by the valid loss, as EMO-SUPERB.
``multilabel``   every class holding more than 1/C of the votes (``votes``). Losses ``bce`` (binary cross-entropy,
                 one sigmoid per class), ``soft-ce`` (softmax cross-entropy against the normalised indicators).
                 Selection by valid macro-F1.
``regression``   one or more float columns (``--targets arousal,valence,dominance``). Losses ``ccc`` (1 - mean
                 CCC over the targets, Wagner et al.), ``mse``. Selection by valid mean CCC.

Heads: ``linear`` (the paper's downstream model: Linear(D -> hidden), ReLU, pooling, Linear(hidden -> outputs)),
``arcface`` (the last layer scores cosines between the pooled vector and one learned centre per class, scaled by s;
the training loss adds the additive angular margin m to the true class: categorical only), ``wagner`` (Wagner et al.:
pooling over the input frames, dropout, Linear(D -> hidden), tanh, dropout, Linear(hidden -> outputs)).
Pooling: ``mean`` (masked mean over frames), ``sum``, ``max`` (per dimension), ``attention`` (learned softmax weights
over frames), ``stats`` (mean and standard deviation concatenated); all but mean need frame-level features.

Training defaults per task (:data:`TRAINING_DEFAULTS`, what ``None`` means for the optimiser, the schedule and the
standardisation of a probe): the class tasks keep the official recipe (RMSprop with momentum, triangular cyclic
learning rate, raw features); regression, where that recipe diverges (CCC 0.000 on URDU-derived arousal / valence
targets, ``benchmarks/regression_defaults.py``), standardises the features and the targets and trains with AdamW
at a constant learning rate.
"""

from __future__ import annotations

import math

from . import ProbeError

__all__ = ["TASKS", "LOSSES", "DEFAULT_LOSS", "HEADS", "POOLINGS", "OPTIMIZERS", "SCHEDULERS", "TRAINING_DEFAULTS",
           "TASK_SELECT_METRICS", "DEFAULT_SELECT",
           "LOWER_IS_BETTER", "is_better", "SMOOTHED_LOSSES", "check_combination"]

TASKS = ("categorical", "soft", "multilabel", "regression")
LOSSES = {
    "categorical": ("ce", "cb-ce"),
    "soft": ("soft-ce", "cb-ce"),
    "multilabel": ("bce", "soft-ce"),
    "regression": ("ccc", "mse"),
}
DEFAULT_LOSS = {"categorical": "ce", "soft": "soft-ce", "multilabel": "bce", "regression": "ccc"}
#: losses that take --label-smoothing
SMOOTHED_LOSSES = ("ce", "cb-ce", "soft-ce")
HEADS = ("linear", "arcface", "wagner")
POOLINGS = ("mean", "sum", "max", "attention", "stats")
#: optimisers of the probe (fine-tuning trains with AdamW)
OPTIMIZERS = ("rmsprop", "adam", "adamw")
#: learning-rate schedules of the probe: triangular cyclic (official recipe), constant, x gamma after every epoch
SCHEDULERS = ("cyclic", "none", "exponential")
#: per task: what a probe uses when the option is not given (see the module docstring)
TRAINING_DEFAULTS = {
    "categorical": {"optimizer": "rmsprop", "scheduler": "cyclic", "standardize": False, "standardize_targets": False},
    "soft": {"optimizer": "rmsprop", "scheduler": "cyclic", "standardize": False, "standardize_targets": False},
    "multilabel": {"optimizer": "rmsprop", "scheduler": "cyclic", "standardize": False, "standardize_targets": False},
    "regression": {"optimizer": "adamw", "scheduler": "none", "standardize": True, "standardize_targets": True},
}
#: per task: the valid metrics that can pick a fold's best epoch
TASK_SELECT_METRICS = {
    "categorical": ("wa", "ua", "wf1", "macro_f1", "loss"),
    "soft": ("wa", "ua", "wf1", "macro_f1", "ml_macro_f1", "loss"),
    "multilabel": ("macro_f1", "micro_f1", "loss"),
    "regression": ("ccc", "mae", "loss"),
}
DEFAULT_SELECT = {"categorical": "ua", "soft": "loss", "multilabel": "macro_f1", "regression": "ccc"}
#: selection metrics to minimise (the others are maximised)
LOWER_IS_BETTER = ("loss", "mae", "ece")


def is_better(score: float, best: float | None, metric: str) -> bool:
    """Whether ``score`` of selection ``metric`` beats ``best`` (None: nothing yet); NaN never does."""
    if best is None:
        return True
    if math.isnan(score):
        return False
    return score < best if metric in LOWER_IS_BETTER else score > best


def _all_losses() -> list[str]:
    return sorted({loss for losses in LOSSES.values() for loss in losses})


def check_combination(task: str, loss: str | None, head: str, pooling: str, select_metric: str | None,
                      label_smoothing: float = 0.0) -> tuple[str, str]:
    """Refuse, by name, what does not go together; -> (loss, select metric) with the task's defaults filled in."""
    if task not in TASKS:
        raise ProbeError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    loss = loss or DEFAULT_LOSS[task]
    if loss not in LOSSES[task]:
        where = [t for t, losses in LOSSES.items() if loss in losses]
        hint = f" (it is a loss of --task {' / '.join(where)})" if where else f" (losses: {', '.join(_all_losses())})"
        raise ProbeError(f"--loss {loss} does not apply to --task {task}{hint}; {task} losses: "
                         f"{', '.join(LOSSES[task])}")
    if head not in HEADS:
        raise ProbeError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
    if head == "arcface" and task != "categorical":
        raise ProbeError(f"--head arcface applies to --task categorical only, not {task}: its margin needs one "
                         f"true class per utterance")
    if pooling not in POOLINGS:
        raise ProbeError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    select_metric = select_metric or DEFAULT_SELECT[task]
    if select_metric not in TASK_SELECT_METRICS[task]:
        raise ProbeError(f"--select-metric {select_metric} does not apply to --task {task}; choose from "
                         f"{', '.join(TASK_SELECT_METRICS[task])}")
    if label_smoothing and loss not in SMOOTHED_LOSSES:
        raise ProbeError(f"--label-smoothing applies to the cross-entropy losses ({', '.join(SMOOTHED_LOSSES)}), "
                         f"not --loss {loss}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ProbeError(f"--label-smoothing must lie in [0, 1), got {label_smoothing}")
    return loss, select_metric
