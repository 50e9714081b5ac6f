"""The exported model: a folder that ``emotion2vec extract``, ``Emotion2Vec.from_checkpoint`` and ``emotion2vec
predict`` load like an emotion2vec+ folder.

emotion2vec / data2vec 2.0 / data2vec (v1) upstreams: our checkpoint format (``config.json``, ``model.safetensors``
for the fine-tuned encoder, ``head.safetensors`` for the head), with the classifier entry of ``config.json`` holding
the head kind, the label or target names and the head's config:

``mean_linear``  a kept emotion2vec+ head (mean over frames, one Linear);
``park``         Park et al.'s head (:class:`~.park.ParkHead`): ``config`` as ``downstream`` with ``park`` (its
                 :class:`~.park.ParkHeadConfig`) instead of ``head``, and for the speaker-aware model ``fusion`` park
                 and ``speaker`` (the speaker network, its tensors under ``speaker.``);
``downstream``   the fine-tuning head (:class:`~.heads.UtteranceHead`): ``config`` has ``layer``, ``task``, ``loss``,
                 ``activation`` (softmax | sigmoid | identity: class probabilities, multi-label probabilities or
                 regression values), ``head`` (its :class:`~emotion2vec.downstream.heads.HeadConfig`) and, for a
                 speaker-aware head, ``fusion``, ``speaker_dim`` and ``speaker`` (the speaker model's config, whose
                 tensors are stored in ``head.safetensors`` under ``speaker.``).

Hugging Face upstreams (``hf:``): the encoder as a ``save_pretrained`` folder ``encoder/`` (features:
``emotion2vec extract --checkpoint hf:DIR/encoder``) and the head as ``head.safetensors`` + ``classifier.json``
beside it (read back by :func:`emotion2vec.models.upstream.read_hf_classifier`; the export folder itself loads
everywhere a checkpoint does).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from torch import nn

from ..downstream.losses import BCELoss, RegressionLoss
from ..io.atomic import atomic_write_bytes, atomic_write_text
from ..models.checkpoint import ClassifierSpec
from .heads import UtteranceHead, speaker_spec_config

__all__ = ["activation_of", "classifier_spec", "export_model"]


def activation_of(loss_fn: nn.Module) -> str:
    """How the head's outputs become predictions (the loss's ``activate``)."""
    if isinstance(loss_fn, RegressionLoss):
        return "identity"
    return "sigmoid" if isinstance(loss_fn, BCELoss) else "softmax"


def classifier_spec(head: nn.Module, names: Sequence[str], layer: int, task: str, loss: str,
                    activation: str) -> ClassifierSpec:
    """The :class:`~emotion2vec.models.checkpoint.ClassifierSpec` of a trained head (tensors copied to the CPU)."""
    from .park import PARK_KIND, ParkHead, park_spec_config

    common = {"layer": int(layer), "task": task, "loss": loss, "activation": activation}
    if isinstance(head, ParkHead):  # Park et al.'s attention-block head (and its speaker network)
        state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()
                 if not k.startswith("speaker.id_output.")}  # the joint training's identification layer
        return ClassifierSpec(PARK_KIND, list(names), state, {**common, **park_spec_config(head)})
    if not isinstance(head, UtteranceHead):  # a kept emotion2vec+ head
        state = {k: v.detach().cpu().clone() for k, v in head.linear.state_dict().items()}
        return ClassifierSpec("mean_linear", list(names), state, common)
    config: dict[str, Any] = {**common, "head": asdict(head.config)}
    if head.fusion:
        config.update(fusion=head.fusion, speaker_dim=head.speaker.dim, speaker=speaker_spec_config(head.speaker))
    state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
    return ClassifierSpec("downstream", list(names), state, config)


def export_model(folder: str | Path, upstream: nn.Module, spec: ClassifierSpec, source: dict[str, Any]) -> Path:
    """Write the fine-tuned ``upstream`` and its head ``spec`` into ``folder`` (each file atomically)."""
    from ..models.checkpoint import save_checkpoint_dir
    from ..models.upstream import HF_CLASSIFIER, upstream_kind

    folder = Path(folder)
    if upstream_kind(upstream) != "hf":
        save_checkpoint_dir(folder, upstream.cfg, {k: v for k, v in upstream.state_dict().items()}, None, source, spec)
        return folder
    from safetensors.torch import save

    upstream.model.save_pretrained(folder / "encoder")
    if upstream.mel is not None:
        upstream.mel.save_pretrained(folder / "encoder")
    else:
        import transformers

        transformers.Wav2Vec2FeatureExtractor(do_normalize=upstream.cfg.input_norm).save_pretrained(folder / "encoder")
    atomic_write_bytes(folder / "head.safetensors", save({k: v.contiguous() for k, v in spec.state.items()}))
    atomic_write_text(folder / HF_CLASSIFIER, json.dumps(
        {"kind": spec.kind, "labels": list(spec.labels), "config": spec.config, "encoder": "hf:encoder",
         "source": source}, indent=2, ensure_ascii=False) + "\n")
    return folder
