"""End-to-end fine-tuning of an upstream with a downstream head (``emotion2vec finetune``).

:mod:`.config` (the options and what goes together), :mod:`.data` (waveform batches by total seconds, crops,
repeat-padding, the seeded per-epoch plan that makes a resume exact), :mod:`.heads` (the utterance head, speaker
fusion, the frozen speaker encoder), :mod:`.park` (Park et al.'s attention-block heads and the fusion of their
Eq. 5), :mod:`.model` (upstream + head, freezing, layer-wise learning rates, starting
from a classifier's head), :mod:`.train` (one fold: AdamW, schedule, accumulation, clipping, autocast, DDP,
checkpoints, selection on dev), :mod:`.export` (the model folder `predict` and `extract` load) and :mod:`.run`
(folds, outputs like a probe run).
"""

from ..errors import Emotion2VecError

__all__ = ["FinetuneError", "FREEZE_MODES", "SCHEDULES", "PRECISIONS", "FUSIONS", "FT_TASKS", "INIT_HEAD"]


class FinetuneError(Emotion2VecError, ValueError):
    """Options, inputs or a resume that fine-tuning cannot run with; the message names the value."""


#: light constants (the CLI parser reads them without importing torch)
FREEZE_MODES = ("cnn", "none", "all-but-top")
SCHEDULES = ("linear", "cosine", "constant", "exponential")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FUSIONS = ("concat", "tensor", "park")
FT_TASKS = ("categorical", "soft", "multilabel", "regression", "speaker")
INIT_HEAD = ("new", "keep")
