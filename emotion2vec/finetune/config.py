"""The options of a fine-tuning run and the checks of what goes together (plain Python: no torch).

:class:`FinetuneConfig` holds everything that changes the trained weights; a resumed run must find the same values
(:func:`differences` names each one that changed). Execution details (device, worker processes, progress) are not
part of it.

Tasks are those of the probe (:mod:`emotion2vec.downstream.tasks`) plus ``speaker``: speaker identification, a
categorical task over the ``speaker`` column of ``data.tsv`` (ArcFace head by default), trained on a per-speaker
split of the utterances since speaker-independent folds share no speaker between train and test.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Sequence

from ..downstream import ProbeError
from ..downstream.epochs import DEFAULT_LR_DECAY, check_lr_decay
from ..downstream.tasks import check_combination
from . import FREEZE_MODES, FUSIONS, FT_TASKS, INIT_HEAD, PRECISIONS, SCHEDULES, FinetuneError

__all__ = ["FinetuneConfig", "parse_freeze", "differences", "head_task"]

_FREEZE_TOP = re.compile(r"^all-but-top(?:[\s:=_]+(-?\d+)|-(\d+))$")


def parse_freeze(spec: str | Sequence[str]) -> tuple[str, int | None]:
    """``cnn`` | ``none`` | ``all-but-top N`` (also ``all-but-top:N``) -> (mode, N or None)."""
    text = " ".join(spec) if not isinstance(spec, str) else spec
    text = text.strip().lower()
    if text in ("cnn", "none"):
        return text, None
    m = _FREEZE_TOP.match(text)
    if m:
        top = int(m.group(1) or m.group(2))
        if top < 0:
            raise FinetuneError(f"--freeze {text!r}: N (the transformer blocks that train) must be >= 0, got {top}")
        return "all-but-top", top
    raise FinetuneError(f"--freeze {text!r}: choose cnn, none or 'all-but-top N' (N = transformer blocks to train)")


def head_task(task: str) -> str:
    """The downstream task a fine-tuning task trains (``speaker`` is categorical over speakers)."""
    return "categorical" if task == "speaker" else task


@dataclass
class FinetuneConfig:
    # task, loss and head (as the probe)
    task: str = "categorical"
    loss: str | None = None
    targets: tuple[str, ...] = ()
    head: str | None = None          # None: arcface for --task speaker, else linear
    pooling: str = "mean"
    dropout: float = 0.0
    hidden: int = 256
    label_smoothing: float = 0.0
    cb_beta: float = 0.999
    arcface_scale: float = 30.0
    arcface_margin: float = 0.3
    layer: int = -1                   # the upstream layer the head reads (-1: the final output)
    prune: bool = True                # drop the blocks above --layer from the model (trained and exported)
    standardize: bool = False         # the head standardises its input with the start model's training statistics
    standardize_targets: bool | None = None  # regression: learn standardised targets (None: on for regression)
    # what trains
    freeze: str = "cnn"               # cnn | none | all-but-top
    freeze_top: int | None = None     # N of all-but-top N
    freeze_updates: int = 0           # the first K updates train the head alone
    layer_decay: float = 1.0          # lr of block i from the top = lr * layer_decay ** i
    init_head: str = "new"            # new | keep (the start checkpoint's classification head)
    head_label_map: str | None = None  # DATA=HEAD,...: which head rows the task's classes keep
    head_from: str | None = None      # a probe run whose per-fold heads start the fine-tuning (LP-FT)
    speaker_model: str | None = None  # a `finetune --task speaker` export fused into the head
    text_features: str | None = None  # an utterance-level feature folder (text:PATH) concatenated in the head
    fusion: str = "concat"            # concat | tensor (Zadeh et al.'s outer product) | park (Park et al.'s Eq. 5)
    park_blocks: int = 0              # > 0: Park et al.'s head with this many attention blocks (speaker task: 1)
    park_dim: int = 0                 # its width d (0: the upstream's)
    park_ffn: int = 0                 # its attention blocks' feed-forward width (0: d)
    start_from: str | None = None     # a finished fine-tuning run: each fold starts from its model of the same fold
    speaker_split: str = "random"     # --task speaker: random per-speaker split | official (the split column)
    speaker_train: str = "frozen"     # --fusion park: frozen | head (its layers after the upstream) | all
    emotion_weight: float = 1.0       # alpha of Eq. (6)
    id_weight: float = 1.0            # beta of Eq. (6)
    # optimisation
    epochs: int = 10
    lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    schedule: str = "linear"          # linear | cosine | constant | exponential (x lr_decay per epoch) after warm-up
    lr_decay: float = DEFAULT_LR_DECAY  # --schedule exponential: the factor after every epoch (Park et al.)
    undersample: bool = False         # every epoch a fresh class-balanced subset of train (Park et al.)
    warmup: float = 0.1               # < 1: share of all updates; >= 1: updates
    batch_seconds: float = 60.0       # padded audio per batch (batch size x longest input)
    accumulate: int = 1
    clip_norm: float = 1.0            # 0: no clipping
    max_seconds: float | None = 15.0  # training crops of longer inputs (random position); None: whole inputs
    repeat_pad: float = 0.0           # training inputs shorter than this are repeated up to it (seconds); 0: off
    precision: str = "fp32"           # fp32 | bf16 | fp16 | auto (resolved by the runner once the model is loaded)
    # selection and splits
    select_metric: str | None = None
    patience: int | None = None
    seed: int = 42
    valid_fraction: float = 0.2
    valid_is_test: bool = False
    speaker_test_fraction: float = 0.2
    min_speaker_utterances: int = 3
    bootstrap: int = 1000
    save_interval_updates: int = 0    # also write checkpoint_last every N updates (0: once per epoch)
    eval_interval_updates: int = 0    # also score the dev set every N updates and keep the best step (0: per epoch)

    def __post_init__(self):
        self.targets = tuple(self.targets)
        self.betas = tuple(float(b) for b in self.betas)
        if self.task not in FT_TASKS:
            raise FinetuneError(f"unknown task {self.task!r}; choose from {', '.join(FT_TASKS)}")
        if self.head is None:
            self.head = "arcface" if self.task == "speaker" else "linear"
        self.loss, self.select_metric = check_combination(head_task(self.task), self.loss, self.head, self.pooling,
                                                          self.select_metric, self.label_smoothing)
        if self.task == "regression" and not self.targets:
            raise FinetuneError("--task regression needs --targets (data.tsv columns, e.g. arousal,valence)")
        if self.task != "regression" and self.targets:
            raise FinetuneError(f"--targets names regression columns; --task {self.task} does not use them")
        if self.standardize_targets is None:
            self.standardize_targets = self.task == "regression"
        if self.standardize_targets and self.task != "regression":
            raise FinetuneError(f"--standardize-targets applies to --task regression, not {self.task}")
        if self.standardize_targets and self.init_head == "keep":
            raise FinetuneError("--init-head keep applies to class tasks; --standardize-targets to regression")
        if self.undersample and self.task not in ("categorical", "soft", "speaker"):
            raise FinetuneError(f"--undersample balances the classes of each epoch: it applies to --task "
                                f"categorical, soft or speaker, not {self.task}")
        try:
            check_lr_decay(self.lr_decay)
        except ProbeError as e:
            raise FinetuneError(str(e)) from None
        if self.freeze not in FREEZE_MODES:
            raise FinetuneError(f"--freeze {self.freeze!r}: choose from {', '.join(FREEZE_MODES)}")
        if (self.freeze == "all-but-top") != (self.freeze_top is not None) or (self.freeze_top or 0) < 0:
            raise FinetuneError(f"--freeze all-but-top needs a number of blocks N >= 0, got {self.freeze_top!r}")
        if self.schedule not in SCHEDULES:
            raise FinetuneError(f"--schedule {self.schedule!r}: choose from {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise FinetuneError(f"precision {self.precision!r}: choose auto, fp32, bf16 or fp16")
        if self.init_head not in INIT_HEAD:
            raise FinetuneError(f"--init-head {self.init_head!r}: choose from {', '.join(INIT_HEAD)}")
        if self.fusion not in FUSIONS:
            raise FinetuneError(f"--fusion {self.fusion!r}: choose from {', '.join(FUSIONS)}")
        if self.speaker_model and self.task == "speaker":
            raise FinetuneError("--speaker-model fuses a speaker model into an emotion model; --task speaker trains "
                                "the speaker model itself")
        if self.speaker_model and self.init_head == "keep" and self.fusion != "park":
            raise FinetuneError("--speaker-model changes the head's input (the speaker embedding is fused in): it "
                                "cannot keep the start checkpoint's head (--init-head keep), except Park et al.'s "
                                "(--fusion park extends its fusion by the speaker vector)")
        if self.speaker_train not in ("frozen", "head", "all"):
            raise FinetuneError(f"--speaker-train {self.speaker_train!r}: frozen, head or all")
        if self.speaker_train != "frozen" and (self.fusion != "park" or self.task != "categorical"):
            raise FinetuneError("--speaker-train head / all trains Park et al.'s speaker network with the emotion "
                                "network (Eq. 6): it needs --fusion park and --task categorical")
        if self.emotion_weight < 0 or self.id_weight < 0 or not (self.emotion_weight or self.id_weight):
            raise FinetuneError("--emotion-weight and --id-weight (alpha and beta of Eq. 6) must be >= 0, not both 0")
        if self.speaker_split not in ("random", "official"):
            raise FinetuneError(f"--speaker-split {self.speaker_split!r}: random or official")
        if self.speaker_split == "official" and self.task != "speaker":
            raise FinetuneError("--speaker-split applies to --task speaker")
        if self.start_from and (self.head_from or self.standardize):
            raise FinetuneError("--start-from starts each fold from a fine-tuned model; it does not go with "
                                + ("--head-from" if self.head_from else "--standardize"))
        if self.park_blocks < 0 or self.park_dim < 0 or self.park_ffn < 0:
            raise FinetuneError("--park-blocks, --park-dim and --park-ffn must be >= 0")
        if self.park_blocks and self.task == "speaker" and self.park_blocks != 1:
            raise FinetuneError(f"--park-blocks {self.park_blocks}: Park et al.'s speaker-identification network has "
                                f"one attention block (--park-blocks 1)")
        if self.fusion == "park" and not (self.park_blocks and self.speaker_model):
            raise FinetuneError("--fusion park is Park et al.'s speaker-aware model: it needs their emotion network "
                                "(--park-blocks K) and their speaker network (--speaker-model, a `finetune --task "
                                "speaker --park-blocks 1` export)")
        if self.park_blocks and self.speaker_model and self.fusion != "park":
            raise FinetuneError(f"--park-blocks with --speaker-model fuses by Park et al.'s Eq. (5): use --fusion "
                                f"park, not {self.fusion}")
        if self.park_blocks and (self.text_features or self.head_from or self.standardize):
            clash = ("--text-features" if self.text_features else "--head-from" if self.head_from
                     else "--standardize")
            raise FinetuneError(f"--park-blocks (Park et al.'s head) does not go with {clash}")
        if self.park_blocks and (self.pooling != "mean" or self.hidden != 256 or self.dropout):
            raise FinetuneError("--pooling, --hidden and --dropout shape the utterance head; Park et al.'s head "
                                "(--park-blocks) max-pools its attention blocks (--park-dim, --park-ffn)")
        if self.standardize and self.init_head == "keep":
            raise FinetuneError("--standardize adds input statistics to a new head; a kept head (--init-head keep) "
                                "was trained without them")
        if self.head_from and (self.init_head == "keep" or self.speaker_model or self.standardize):
            clash = ("--init-head keep" if self.init_head == "keep" else "--speaker-model" if self.speaker_model
                     else "--standardize (the probe's head carries its own standardisation)")
            raise FinetuneError(f"--head-from starts each fold from a probe's head; it does not go with {clash}")
        if self.text_features and (self.task == "speaker" or self.init_head == "keep" or self.head_from):
            clash = ("--task speaker" if self.task == "speaker" else "--init-head keep" if self.init_head == "keep"
                     else "--head-from")
            raise FinetuneError(f"--text-features adds the text vector to a new head's input; it does not go with "
                                f"{clash}")
        if self.head_label_map and self.init_head != "keep":
            raise FinetuneError("--head-label-map says which rows of a kept head the classes take: it needs "
                                "--init-head keep")
        for name in ("epochs", "hidden", "accumulate", "min_speaker_utterances"):
            if getattr(self, name) < 1:
                raise FinetuneError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("lr", "head_lr", "batch_seconds", "arcface_scale"):
            if not getattr(self, name) > 0:
                raise FinetuneError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "clip_norm", "repeat_pad", "freeze_updates", "save_interval_updates",
                     "eval_interval_updates", "bootstrap", "warmup"):
            if getattr(self, name) < 0:
                raise FinetuneError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise FinetuneError(f"--layer-decay must lie in (0, 1] (1 = no decay), got {self.layer_decay}")
        if self.max_seconds is not None and self.max_seconds < 0.1:
            raise FinetuneError(f"--max-seconds must be at least 0.1 s (or 0 for whole inputs), got {self.max_seconds}")
        if self.max_seconds is not None and self.repeat_pad > self.max_seconds:
            raise FinetuneError(f"--repeat-pad {self.repeat_pad} s exceeds --max-seconds {self.max_seconds} s")
        if self.patience is not None and self.patience < 1:
            raise FinetuneError(f"--patience must be positive, got {self.patience}")
        for name in ("valid_fraction", "speaker_test_fraction", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise FinetuneError(f"--{name.replace('_', '-')} must lie in [0, 1), got {getattr(self, name)}")
        if not all(0.0 <= b < 1.0 for b in self.betas) or len(self.betas) != 2:
            raise FinetuneError(f"--betas must be two numbers in [0, 1), got {self.betas}")

    @property
    def downstream_task(self) -> str:
        return head_task(self.task)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["targets"], d["betas"] = list(self.targets), list(self.betas)
        return d


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'KEY is OLD there, NEW now' for every setting that differs (keys of either side)."""
    out = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            out.append(f"{k} is {old.get(k)!r} there, {new.get(k)!r} now")
    return out
