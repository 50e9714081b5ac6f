"""Layer pruning: an upstream cut after one of its layers (Wagner et al., section 6.2: top layers removed before
fine-tuning, a 24-block model kept at 12).

:func:`prune_upstream` removes, in place, every transformer block above layer ``layer`` (the numbering of
``--layers``: a block index for our checkpoints and data2vec (v1), a hidden state for ``hf:`` models, where layer 0
is the transformer's input and layer i the output of block i). The pruned model's last layer is the old layer
``layer``; its config says so, so a saved pruned model loads as the smaller model it is.

* emotion2vec / data2vec 2.0: the output of block ``layer`` is unchanged (no norm follows the blocks). Cut inside the
  prenet (``layer < prenet_depth``), the last kept prenet block becomes the one main block (a config needs one); in
  eval mode the outputs are the same, in training that block's layerdrop and drop-path follow the main blocks'
  settings. A per-layer ALiBi scale keeps the rows of the kept blocks.
* data2vec (v1): blocks above ``layer`` removed; unchanged outputs.
* Hugging Face models: the encoder keeps its first ``layer`` blocks. Post-LN models (the base wav2vec 2.0 / HuBERT)
  give the old hidden state ``layer`` unchanged; pre-LN models (``do_stable_layer_norm``: the large ones, WavLM
  large, Whisper) apply their final LayerNorm after the last kept block, as Wagner et al.'s pruned model does, so
  that layer's features change by that normalisation (a note says so).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .config import ConfigError

__all__ = ["prune_upstream"]


def prune_upstream(upstream: Any, layer: int) -> list[str]:
    """Remove every block above ``layer`` (negative: counted from the last) from ``upstream`` in place. -> notes for
    the run's results (what changed). Refused by name: a layer outside the model, a model kind without blocks."""
    total = upstream.cfg.num_layers
    if not -total <= layer < total:
        raise ConfigError(f"prune at layer {layer}: the model has {total} layers (0..{total - 1})")
    layer %= total
    if layer == total - 1:
        return []
    kind = getattr(upstream, "kind", "emotion2vec")
    if kind == "hf":
        return _prune_hf(upstream, layer, total)
    if kind == "data2vec1":
        upstream.encoder.blocks = nn.ModuleList(list(upstream.encoder.blocks)[:layer + 1])
        upstream.cfg.depth = layer + 1
        return [f"pruned: the {total - layer - 1} block(s) above layer {layer} removed ({layer + 1} of {total} kept)"]
    return _prune_emotion2vec(upstream, layer, total)


def _prune_emotion2vec(model: Any, layer: int, total: int) -> list[str]:
    import dataclasses

    enc, cfg = model.encoder, model.cfg
    prenet, blocks = list(enc.prenet), list(enc.blocks)
    keep = layer + 1
    if keep > len(prenet):
        enc.blocks = nn.ModuleList(blocks[:keep - len(prenet)])
        changes = {"depth": keep - len(prenet)}
    else:  # a config needs one main block: the last kept prenet block becomes it
        enc.prenet = nn.ModuleList(prenet[:keep - 1])
        enc.blocks = nn.ModuleList([prenet[keep - 1]])
        changes = {"prenet_depth": keep - 1, "depth": 1}
    enc.depth = changes["depth"]
    if getattr(enc, "alibi_scale", None) is not None and enc.alibi_scale.shape[0] > 1:
        kept = enc.alibi_scale.data[:keep].clone()
        if isinstance(enc.alibi_scale, nn.Parameter):
            enc.alibi_scale = nn.Parameter(kept, requires_grad=enc.alibi_scale.requires_grad)
        else:
            enc.register_buffer("alibi_scale", kept, persistent=False)
    model.cfg = dataclasses.replace(cfg, **changes)
    return [f"pruned: the {total - keep} block(s) above layer {layer} removed ({keep} of {total} kept)"]


def _prune_hf(upstream: Any, layer: int, total: int) -> list[str]:
    if layer == 0:
        raise ConfigError("prune at layer 0 of a Hugging Face model would keep no transformer block (layer 0 is the "
                          "transformer's input); choose a layer >= 1")
    model = upstream.model
    encoder = getattr(model, "encoder", model)
    holder = encoder if hasattr(encoder, "layers") else model
    holder.layers = nn.ModuleList(list(holder.layers)[:layer])
    config = model.config
    if hasattr(config, "encoder_layers") and config.model_type == "whisper":
        config.encoder_layers = layer
    else:
        config.num_hidden_layers = layer
    upstream.cfg.num_layers = layer + 1
    notes = [f"pruned: the {total - 1 - layer} block(s) above layer {layer} removed ({layer} of {total - 1} kept)"]
    if getattr(config, "do_stable_layer_norm", False) or config.model_type == "whisper":
        notes.append("the model's final LayerNorm now follows the last kept block (a pre-LN model): its features "
                     "are those of the old layer, normalised")
    return notes
