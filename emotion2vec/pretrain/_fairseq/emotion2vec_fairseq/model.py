"""fairseq model ``emotion2vec``: :class:`~emotion2vec.pretraining.Emotion2VecPretrainer` behind fairseq's API.

Its config is generated from the core dataclasses (:class:`Emotion2VecConfig` minus the task-level ``normalize`` /
``sample_rate``, plus :class:`DistillationConfig`) and the ``init_*`` options, so every core field is a
``model.<name>=...`` override and there is one definition of each.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from typing import Any, Optional

from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model

from emotion2vec.models.config import Emotion2VecConfig
from emotion2vec.pretrain.distill import DistillationConfig, Emotion2VecPretrainer
from emotion2vec.pretrain.init import init_from_checkpoint

logger = logging.getLogger(__name__)

TASK_LEVEL = ("normalize", "sample_rate")  # owned by the task config


def _hydra_type(t: Any) -> Any:
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return Optional[args[0]]
    return t


def _fields(dc: type, exclude: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    hints = typing.get_type_hints(dc)
    return [(f.name, _hydra_type(hints[f.name]), dataclasses.field(default=f.default))
            for f in dataclasses.fields(dc) if f.name not in exclude]


Emotion2VecFairseqConfig = dataclasses.make_dataclass(
    "Emotion2VecFairseqConfig",
    _fields(Emotion2VecConfig, exclude=TASK_LEVEL) + _fields(DistillationConfig) + [
        ("init_from", Optional[str], dataclasses.field(default=None)),
        ("init_layout", str, dataclasses.field(default="fairseq")),
        ("init_trust_checkpoint", bool, dataclasses.field(default=False)),
    ],
    bases=(FairseqDataclass,),
)


def split_config(cfg: Any, normalize: bool) -> tuple[Emotion2VecConfig, DistillationConfig]:
    model_names = [f.name for f in dataclasses.fields(Emotion2VecConfig) if f.name not in TASK_LEVEL]
    distill_names = [f.name for f in dataclasses.fields(DistillationConfig)]
    return (Emotion2VecConfig(**{k: cfg[k] for k in model_names}, normalize=bool(normalize)),
            DistillationConfig(**{k: cfg[k] for k in distill_names}))


@register_model("emotion2vec", dataclass=Emotion2VecFairseqConfig)
class Emotion2VecFairseqModel(Emotion2VecPretrainer, BaseFairseqModel):
    @classmethod
    def build_model(cls, cfg, task):
        model_cfg, distill = split_config(cfg, task.cfg.normalize)
        model = cls(model_cfg, distill)
        if cfg.init_from:
            init_from_checkpoint(model, cfg.init_from, layout=cfg.init_layout, trust=cfg.init_trust_checkpoint)
        else:
            logger.info("cold start: no model.init_from, every weight at its random initialisation")
        return model

    def forward(self, source, mask=None, **_: Any) -> dict[str, Any]:
        out = super().forward(source, mask)
        return {"losses": out.losses, "sample_size": out.sample_size, **out.logs}

    def set_num_updates(self, num_updates: int) -> None:
        self.num_updates = num_updates

    def state_dict(self, *args: Any, destination=None, prefix: str = "", keep_vars: bool = False):
        """fairseq saves ``model.state_dict()``: the student, plus the teacher under ``_ema`` (fairseq's own key)."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        state[prefix + "_ema"] = self.teacher_state_dict()
        return state

    def load_state_dict(self, state_dict, strict: bool = True, model_cfg=None, args=None):
        state = dict(state_dict)
        ema = state.pop("_ema", None)
        result = Emotion2VecPretrainer.load_state_dict(self, state, strict=strict)
        if ema is not None:
            self.load_teacher_state_dict(ema, strict=strict)
        return result
