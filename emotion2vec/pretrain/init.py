"""Initialise an emotion2vec student and teacher from a pretrained checkpoint (``model.init_from``).

data2vec 2.0 ``base_libri.pt`` is published with 12 main blocks and no prenet, emotion2vec uses 4 prenet + 8 main
blocks: :func:`adapt_layout` decides how blocks of one layout fill the other.

data2vec (v1) ``audio_base_ls.pt`` (fairseq ``data2vec_audio``, read by :mod:`emotion2vec.models.data2vec1`) maps
onto the emotion2vec student as follows (the published base: 12 post-LN blocks, 5-layer positional convolution):

==========================================  ====================================================================
data2vec (v1)                               emotion2vec student (and teacher, from ``_ema`` when present)
==========================================  ====================================================================
``feature_extractor.conv_layers.i``         ``feature_extractor.layers.i`` (same CNN)
``layer_norm``, ``post_extract_proj``       ``feature_projection.norm``, ``feature_projection.linear``
``encoder.pos_conv.j.0`` (depth 5)          ``encoder.pos_conv.layers.j.conv`` (the same stack; a depth-1 weight-normed
                                            convolution has no counterpart: left random)
``encoder.layer_norm`` (before block 0)     ``encoder.context_norm`` (the LayerNorm before the prenet)
``encoder.layers.0-11``                     ``remap``: prenet 0-3 <- 0-3, main 0-7 <- 4-11 (the same function);
                                            ``fairseq``: main 0-7 <- 0-7, 8-11 unused, prenet random
(none)                                      ``alibi_scale`` set to 0 (data2vec (v1) has no ALiBi; learned from 0),
                                            ``extra_tokens`` and the decoder random
``mask_emb``, ``final_proj``                dropped (data2vec's own training objective)
==========================================  ====================================================================

With ``remap`` and no extra tokens the initialised student computes data2vec's function exactly (the ALiBi bias is 0
and the context encoder's input LayerNorm is data2vec's LayerNorm after the positional convolution); emotion2vec's
utterance tokens are attended by every frame, so with them the outputs differ until training adapts.
"""

from __future__ import annotations

import logging
import re
from typing import Mapping

import torch
from torch import Tensor

from ..models.checkpoint import CheckpointError, LoadedCheckpoint, read_checkpoint
from ..models.config import Emotion2VecConfig
from .distill import EMATeacher, Emotion2VecPretrainer

__all__ = ["LAYOUT_POLICIES", "adapt_layout", "init_from_checkpoint"]

logger = logging.getLogger(__name__)

LAYOUT_POLICIES = ("fairseq", "remap")


def adapt_layout(state: Mapping[str, Tensor], src: Emotion2VecConfig, dst: Emotion2VecConfig, policy: str,
                 prefix: str = "encoder.") -> tuple[dict[str, Tensor], list[str]]:
    """Re-key encoder blocks of a ``src``-layout state for a ``dst`` layout (e.g. data2vec 2.0 12+0 into 8+4).

    policy ``fairseq``: keep names (main block i <- block i; unmatched blocks are dropped / left random), exactly
    what restoring with fairseq's non-strict load did. ``remap``: enumerate src blocks in order (prenet then main)
    and deal them to dst prenet then main, so the encoder computes the same function.
    Returns the new state and a list of human-readable notes.
    """
    if policy not in LAYOUT_POLICIES:
        raise ValueError(f"unknown layout policy {policy!r}; choose 'fairseq' or 'remap'")
    notes: list[str] = []
    if (src.prenet_depth, src.depth) == (dst.prenet_depth, dst.depth) or policy == "fairseq":
        return dict(state), notes
    if src.num_layers != dst.num_layers:
        raise CheckpointError(f"cannot remap {src.prenet_depth}+{src.depth} blocks onto {dst.prenet_depth}+"
                              f"{dst.depth}: the total differs")
    pat = re.compile(re.escape(prefix) + r"(prenet|blocks)\.(\d+)\.(.+)$")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = pat.match(key)
        if not m:
            out[key] = value
            continue
        flat = int(m[2]) + (src.prenet_depth if m[1] == "blocks" else 0)
        name, idx = ("prenet", flat) if flat < dst.prenet_depth else ("blocks", flat - dst.prenet_depth)
        out[f"{prefix}{name}.{idx}.{m[3]}"] = value
    notes.append(f"remapped {src.prenet_depth}+{src.depth} blocks onto {dst.prenet_depth}+{dst.depth} in order")
    return out, notes


def init_from_checkpoint(model: Emotion2VecPretrainer, path: str, layout: str = "fairseq",
                         trust: bool = False) -> list[str]:
    """Initialise student (and teacher) from a data2vec 2.0 / emotion2vec / our / data2vec (v1) checkpoint.

    Student tensors are matched by name after the ``layout`` policy (``fairseq``: names as they are, so a 12+0
    data2vec 2.0 file fills main blocks 0..7 and leaves the prenet random; ``remap``: blocks dealt in order onto
    prenet then main). Shapes must agree. The teacher comes from the file's ``_ema`` when present (keys it lacks
    keep the construction copy, as fairseq's non-strict restore did), else it is a copy of the loaded student.
    Returns report lines: what was loaded, skipped and left at its random initialisation. A data2vec (v1) file is
    mapped as the module docstring's table says (its ALiBi scales start at 0).
    """
    ckpt = read_checkpoint(path, trust=trust)
    data2vec1 = getattr(ckpt.config, "architecture", None) == "data2vec1"
    student, notes = adapt_layout(ckpt.model, ckpt.config, model.cfg, layout, prefix="encoder.")
    own = torch.nn.Module.state_dict(model)  # the student alone, whatever an adapter subclass adds
    mismatched = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in student.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        raise CheckpointError(f"{path}: cannot initialise from it, tensor shapes differ:\n  " + "\n  ".join(mismatched))
    skipped = sorted(k for k in student if k not in own)
    left = sorted(k for k in own if k not in student)
    with torch.no_grad():
        for k, v in student.items():
            if k in own:
                own[k].copy_(v)
    report = [f"init_from {path} ({ckpt.source}, layout policy '{layout}')", *notes,
              f"student: loaded {len(student) - len(skipped)} tensors; skipped {len(skipped)} not in this model"
              + (f" ({', '.join(skipped[:6])}{' ...' if len(skipped) > 6 else ''})" if skipped else "")
              + f"; left {len(left)} at random init"
              + (f" ({', '.join(left[:6])}{' ...' if len(left) > 6 else ''})" if left else "")]
    if ckpt.teacher:
        teacher_state, _ = adapt_layout(ckpt.teacher, ckpt.config, model.cfg, layout, prefix="")
        own_t = model.teacher.fp32
        t_mismatch = [k for k, v in teacher_state.items() if k in own_t and tuple(v.shape) != tuple(own_t[k].shape)]
        if t_mismatch:
            raise CheckpointError(f"{path}: teacher (_ema) shapes differ for {', '.join(t_mismatch[:6])}")
        usable = {k: v for k, v in teacher_state.items() if k in own_t}
        missing = model.load_teacher_state_dict(usable, strict=False)
        report.append(f"teacher: loaded {len(usable)} tensors from _ema; {len(missing)} keep the construction copy"
                      + (f" ({', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''})" if missing else ""))
        unused = ckpt.meta.get("teacher_unused") or []
        if unused:
            report.append(f"teacher: {len(unused)} tensor(s) of _ema are outside the context encoder and not used "
                          f"(the teacher reads the student's CNN features): {', '.join(unused[:6])}"
                          + (" ..." if len(unused) > 6 else ""))
    else:
        model.teacher = EMATeacher(model.encoder)
        report.append("teacher: no _ema in the file, copied from the loaded student")
    if data2vec1:
        report += _from_data2vec1(model, ckpt)
    for line in report:
        logger.info(line)
    return report


def _from_data2vec1(model: Emotion2VecPretrainer, ckpt: LoadedCheckpoint) -> list[str]:
    """What a data2vec (v1) source adds: ALiBi scales (student and teacher) start at 0; notes for the log."""
    with torch.no_grad():
        model.encoder.alibi_scale.zero_()
        if "alibi_scale" in model.teacher.fp32:
            model.load_teacher_state_dict({"alibi_scale": torch.zeros_like(model.teacher.fp32["alibi_scale"])},
                                          strict=False)
        else:  # a fixed (not learned) scale is a buffer of the teacher's copy
            model.teacher.module.alibi_scale.zero_()
    notes = ["alibi_scale set to 0 in student and teacher: data2vec (v1) has no ALiBi, so the encoder starts as "
             "its function (the scale is learned from there)"]
    if ckpt.config.conv_pos_depth == 1:
        notes.append("the file's positional convolution is one weight-normed convolution (pos_conv_depth 1): it "
                     "has no counterpart in the emotion2vec positional encoder, which stays random")
    if ckpt.meta.get("dropped"):
        notes.append(f"dropped data2vec's training-only tensors: {', '.join(ckpt.meta['dropped'])}")
    return notes
