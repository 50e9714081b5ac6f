"""Inference forms of an emotion2vec model in reduced precision: bfloat16 / float16 and, on CPUs, int8.

:func:`prepare_inference` rewrites a model in place for ``extract``, ``predict`` and the Python API (never for
training: the rewritten layers keep their weights in another layout):

* everywhere: the large matrix multiplies (Transformer, middle CNN layers) keep their weights in the compute dtype,
  stored once (plain autocast casts every weight on every call); :func:`float32_modules` (the first and last two
  CNN layers, the feature projection, the positional convolutions: 4 % of the FLOPs, half of the bf16 error) run in
  fp32; norms, softmax and the ALiBi bias stay fp32 as under autocast.
* on a CPU in bfloat16, where torch's oneDNN kernels exist (:func:`onednn_kernels`):
    - every bf16 weight is reordered once into oneDNN's blocked layout (the same kernels, no reorder per call);
    - the middle CNN layers run as channels-last oneDNN convolutions (no copied input windows), their LayerNorm and
      GELU in fp32, rounded once to bf16 as the next layer reads it;
    - the first CNN layer, fp32 in effect, has its LayerNorm folded into its weights (the norm of ``W x`` over the
      channels is a quadratic form of the 10-sample window ``x``) and its GELU fused into the product, which runs
      in bf16 on split operands (``a = a_hi + a_lo``: three bf16 products carry fp32 accuracy) and writes bf16;
    - the FFN's GELU is fused into its first product (applied to the fp32 accumulator, then rounded);
    - the positional convolutions (fp32) run as channels-last oneDNN grouped convolutions.
* int8 (CPU only): the Transformer's four linear layers per block multiply int8 weights (per output channel,
  symmetric) by activations quantised per call (per tensor, unsigned 8 bits over [min, max], the form that oneDNN
  runs with AVX512-VNNI and AMX-INT8 kernels); the rest of the model as in bfloat16 where the CPU has bf16 units,
  else fp32.

Each rewrite keeps the model's results within its dtype's documented error of fp32 (docs: performance; tests:
``tests/test_speed.py``); ``benchmarks/levers.py`` measures what each buys. A rewritten layer's kernel holds its
weight in its own layout and the module keeps an empty weight of the same dtype: the model holds each weight once,
and is for inference only (a fresh copy from the checkpoint trains or exports).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["INT8", "prepare_inference", "float32_modules", "onednn_kernels", "int8_kernels"]

#: int8 inference is requested with this torch dtype (the weights of the Transformer's linear layers)
INT8 = torch.int8


# ------------------------------------------------------------------------------------------------ capabilities
@functools.lru_cache(maxsize=1)
def onednn_kernels() -> bool:
    """Whether this torch build has the oneDNN ops used for bf16 on a CPU (prepacked linear with a fused GELU,
    prepacked channels-last convolution: internal ops of torch's CPU compiler path), and they compute correctly."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        mk = torch.ops.mkldnn
        w = mk._reorder_linear_weight(torch.ones(2, 2, dtype=torch.bfloat16), None)
        y = mk._linear_pointwise(torch.ones(1, 2, dtype=torch.bfloat16), w, None, "gelu", [], "none")
        cw = mk._reorder_convolution_weight(torch.ones(2, 2, 1, 2, dtype=torch.bfloat16), [0, 0], [1, 2], [1, 1], 1,
                                            None)
        x = torch.ones(1, 4, 2, dtype=torch.bfloat16).transpose(1, 2).unsqueeze(2)
        c = mk._convolution_pointwise(x, cw, None, [0, 0], [1, 2], [1, 1], 1, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return abs(float(y.float().sum()) - 2 * 1.9545) < 0.05 and c.shape == (1, 2, 1, 2) and float(c.float().sum()) == 16


@functools.lru_cache(maxsize=1)
def int8_kernels() -> bool:
    """Whether this torch build has oneDNN's int8 linear (u8 activations x s8 weights) and it computes correctly."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        w = torch.ops.onednn.qlinear_prepack(torch.ones(2, 2, dtype=torch.int8), None)
        y = torch.ops.onednn.qlinear_pointwise(torch.full((1, 2), 130, dtype=torch.uint8), 0.5, 128, w,
                                               torch.ones(2), torch.zeros(2, dtype=torch.long), None, 1.0, 0,
                                               torch.float32, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return float(y.sum()) == 4.0


# ------------------------------------------------------------------------------------------------ fp32 islands
class _Float32Forward:
    """A module's forward with autocast off and floating-point tensor arguments in fp32."""

    def __init__(self, forward):
        self.forward = forward

    def __call__(self, *args, **kwargs):
        x = next((a for a in args if isinstance(a, torch.Tensor)), None)
        with torch.autocast(x.device.type if x is not None else "cpu", enabled=False):
            args = tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
            return self.forward(*args, **kwargs)


def float32_modules(model: nn.Module) -> list[nn.Module]:
    """The parts of an emotion2vec model that stay fp32 under reduced-precision inference: the first and the last
    two layers of the waveform CNN, the feature projection and the positional convolutions. Their matrix multiplies
    are small (about 4 % of the FLOPs) but in bf16 they add as much error as all the rest: on the base model with
    random weights they take the frame-level error from 1.6 % to 0.9 % relative L2."""
    layers = model.feature_extractor.layers
    return [layers[0], *layers[-2:], model.feature_projection, model.encoder.pos_conv]


# ------------------------------------------------------------------------------------------------ bf16 on a CPU
_LINEAR = torch.ops.mkldnn._linear_pointwise if hasattr(torch.ops, "mkldnn") else None


class _PackedLinear:
    """A bf16 ``nn.Linear`` forward with its weight reordered once into oneDNN's blocked layout (the kernel oneDNN
    would pick anyway, without the reorder it otherwise does on every call: ~1.45x on one utterance's Transformer),
    optionally with the GELU that follows it fused (``gelu=True``). The input is cast to bf16 as autocast would."""

    def __init__(self, linear: nn.Linear, gelu: bool = False):
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().to(torch.bfloat16), None)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.attr, self.algorithm = ("gelu", "none") if gelu else ("none", "")

    def __call__(self, x: Tensor) -> Tensor:
        return _LINEAR(x.to(torch.bfloat16), self.weight, self.bias, self.attr, [], self.algorithm)


class _FusedFeedForward:
    """FeedForward in eval mode: fc1 with its GELU fused, then fc2 (``_PackedLinear`` or ``_Int8Linear`` each)."""

    def __init__(self, fc1, fc2):
        self.fc1, self.fc2 = fc1, fc2

    def __call__(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x))


def _layer_norm_gelu(y: Tensor, norm: nn.LayerNorm, out_dtype: torch.dtype) -> Tensor:
    """LayerNorm then GELU over the last axis in fp32, rounded once to ``out_dtype``."""
    y = F.layer_norm(y.float(), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return F.gelu(y).to(out_dtype)


class _PackedConvBlock:
    """A bf16 CNN layer (:class:`~emotion2vec.models.components.ConvLayerBlock`): oneDNN's channels-last
    convolution with the weight prepacked once (no copied input windows; ~1.1x over windows + matrix multiply),
    then LayerNorm and GELU in fp32, rounded once to ``out_dtype`` (bf16 when the next layer reads bf16)."""

    def __init__(self, block, out_dtype: torch.dtype):
        w = block.conv.weight.detach().to(torch.bfloat16).unsqueeze(2)  # (C_out, C_in, 1, k)
        self.stride = [1, block.conv.stride]
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(w, [0, 0], self.stride, [1, 1], 1, None)
        self.norm, self.out_dtype = block.norm, out_dtype

    def __call__(self, x: Tensor) -> Tensor:  # (B, L, C_in) -> (B, L', C_out)
        with torch.autocast("cpu", enabled=False):
            x = x.to(torch.bfloat16).transpose(1, 2).unsqueeze(2)  # (B, C_in, 1, L), channels-last in memory
            y = torch.ops.mkldnn._convolution_pointwise(x, self.weight, None, [0, 0], self.stride, [1, 1], 1, "none",
                                                        [], "")
            return _layer_norm_gelu(y.squeeze(2).transpose(1, 2), self.norm, self.out_dtype)


def _split_bf16(t: Tensor) -> tuple[Tensor, Tensor]:
    hi = t.to(torch.bfloat16)
    return hi, (t - hi.to(t.dtype)).to(torch.bfloat16)


class _FoldedFirstConv:
    """The first CNN layer (one input channel, kernel k, stride s; LayerNorm over C channels, GELU) as one product.

    For a window x (k samples) and the conv weight W (C, k): the channel mean of ``W x`` is ``mean(W) x``, so with
    ``V = W - mean(W)`` the centred output is ``V x`` and its variance is the quadratic form ``x' G x`` with
    ``G = V'V / C``. Hence ``LN(W x) = gamma * (V x) * r(x) + beta`` with ``r(x) = (x' G x + eps)^-1/2``: the norm
    folds into the weight (``gamma * V``) and one scalar per window (``r``), and the GELU fuses into the product.

    ``out_dtype`` bf16: the product runs on split bf16 operands (``z = z_hi + z_lo``, ``V = V_hi + V_lo``:
    ``z_hi V_hi + z_hi V_lo + z_lo V_hi`` with the bias as two more columns, K = 3k + 2), with fp32 accuracy, and
    writes bf16 (what the next layer reads). fp32: the product in fp32. Either way the layer's arithmetic is fp32's.
    """

    def __init__(self, block, out_dtype: torch.dtype):
        w = block.conv.weight.detach().flatten(1).double()  # (C, k)
        centred = w - w.mean(0, keepdim=True)
        self.gram = (centred.T @ centred / w.shape[0]).float()  # (k, k)
        scaled = centred * block.norm.weight.detach().double()[:, None]
        bias = block.norm.bias.detach().double()
        self.kernel, self.stride, self.eps = block.kernel_size, block.stride, block.norm.eps
        self.out_dtype = out_dtype
        if out_dtype == torch.bfloat16:
            (w_hi, w_lo), (b_hi, b_lo) = _split_bf16(scaled), _split_bf16(bias[:, None])
            weight, self.bias = torch.cat([w_hi, w_lo, w_hi, b_hi, b_lo], 1), None
        else:
            weight, self.bias = scaled.float(), bias.float()
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, None)

    def __call__(self, x: Tensor) -> Tensor:  # (B, L, 1) -> (B, L', C)
        with torch.autocast("cpu", enabled=False):
            windows = x.float().unfold(1, self.kernel, self.stride).flatten(2)  # (B, L', k)
            variance = ((windows @ self.gram) * windows).sum(-1, keepdim=True)
            z = windows * torch.rsqrt(variance + self.eps)
            if self.out_dtype == torch.bfloat16:
                hi, lo = _split_bf16(z)
                z = torch.cat([hi, hi, lo, hi.new_ones(z.shape[:-1] + (2,))], -1)
            return _LINEAR(z, self.weight, self.bias, "gelu", [], "none")


class _PackedPositionalConv:
    """The positional convolutions (:class:`~emotion2vec.models.components.ConvPositionalEncoder`) in fp32 as
    oneDNN's channels-last grouped convolutions with prepacked weights: no transposes, LayerNorm on contiguous rows
    (~1.45x; fp32 arithmetic, another summation order)."""

    def __init__(self, encoder):
        self.pre_norm, self.layers = encoder.pre_norm, []
        for layer in encoder.layers:
            conv = layer.conv
            pad = [0, conv.padding[0]]
            w = torch.ops.mkldnn._reorder_convolution_weight(conv.weight.detach().float().unsqueeze(2), pad, [1, 1],
                                                             [1, 1], conv.groups, None)
            self.layers.append((w, conv.bias.detach().float(), pad, conv.groups))

    def __call__(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:  # (B, T, D) -> (B, T, D)
        with torch.autocast("cpu", enabled=False):
            x = x.float()
            if self.pre_norm is not None:
                x = self.pre_norm(x)
            keep = None if padding_mask is None else (~padding_mask).unsqueeze(-1).float()
            T = x.shape[1]
            for weight, bias, pad, groups in self.layers:
                if keep is not None:
                    x = x * keep
                y = torch.ops.mkldnn._convolution_pointwise(x.transpose(1, 2).unsqueeze(2), weight, bias, pad, [1, 1],
                                                            [1, 1], groups, "none", [], "")
                y = y.squeeze(2).transpose(1, 2)[:, :T]  # an even kernel yields one extra step
                x = F.gelu(F.layer_norm(y, y.shape[-1:]))
            return x


# ------------------------------------------------------------------------------------------------ int8 on a CPU
class _Int8Linear:
    """``nn.Linear`` as oneDNN's int8 product: the weight quantised once per output channel (symmetric, s8), the
    activations per call (u8 over the tensor's [min, max], asymmetric: the form oneDNN runs with VNNI and AMX-INT8
    kernels, and twice the resolution of a symmetric scale on one-sided inputs such as the GELU's output),
    accumulated in int32 and written in ``out_dtype`` with the bias (and a fused GELU with ``gelu=True``).
    ``benchmarks/levers.py`` compares it with per-row (per-token) scales."""

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype, gelu: bool = False):
        w = linear.weight.detach().float()
        self.w_scale = (w.abs().amax(1) / 127).clamp_min(1e-12)
        q = torch.round(w / self.w_scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.weight = torch.ops.onednn.qlinear_prepack(q, None)
        self.w_zero = torch.zeros(w.shape[0], dtype=torch.long)
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.out_dtype = out_dtype
        self.attr, self.algorithm = ("gelu", "none") if gelu else ("none", "")

    def __call__(self, x: Tensor) -> Tensor:
        with torch.autocast("cpu", enabled=False):
            low, high = torch.aminmax(x)
            low, high = min(float(low), 0.0), max(float(high), 0.0)
            scale = (high - low) / 255 or 1.0
            zero = int(round(-low / scale))
            # x / scale + zero + 0.5, clamped and truncated: rounded to the nearest of 0..255
            q = (x.float() * (1 / scale)).add_(zero + 0.5).clamp_(0, 255.49).to(torch.uint8)
            return torch.ops.onednn.qlinear_pointwise(q, scale, zero, self.weight, self.w_scale, self.w_zero,
                                                      self.bias, 1.0, 0, self.out_dtype, self.attr, [],
                                                      self.algorithm)


# ------------------------------------------------------------------------------------------------ the rewrite
def _transformer_blocks(model) -> list[nn.Module]:
    return [*model.encoder.prenet, *model.encoder.blocks]


def _release(*modules: nn.Module) -> None:
    """Free the weights of modules whose kernels hold their own copy (prepacked, folded or quantised): the module
    keeps an empty weight of the same dtype, so the model holds each weight once."""
    for m in modules:
        m.weight = nn.Parameter(m.weight.detach().new_empty(0), requires_grad=False)


def prepare_inference(model: nn.Module, dtype: torch.dtype, bf16_units: bool | None = None,
                      kernels: bool = True) -> nn.Module:
    """Rewrite an emotion2vec model (eval mode) for inference in ``dtype`` (bfloat16, float16 or :data:`INT8`)
    under autocast to the matching float dtype, in place; returns ``model``. See the module docstring.

    ``bf16_units``: whether the CPU multiplies bf16 in hardware (default: :func:`emotion2vec.device.bf16_accelerated`);
    int8 keeps the non-quantised layers in bf16 there and in fp32 elsewhere. ``kernels`` False: no oneDNN rewrites
    (weights cast and fp32 layers kept only: plain torch modules, e.g. for ``torch.compile``).
    """
    from .components import ChannelsLastConv1d

    on_cpu = next(model.parameters()).device.type == "cpu"
    if dtype == INT8:
        if not on_cpu:
            raise ValueError("int8 inference runs on a CPU; on a GPU use bfloat16")
        if bf16_units is None:
            from ..device import bf16_accelerated

            bf16_units = bf16_accelerated("cpu")
        float_dtype = torch.bfloat16 if bf16_units else torch.float32
    else:
        float_dtype = dtype
    fp32 = float32_modules(model)
    kept = {id(m) for f in fp32 for m in f.modules()}
    for f in fp32:
        if not isinstance(f.forward, _Float32Forward):
            f.forward = _Float32Forward(f.forward)
    if dtype == INT8:  # quantised from the fp32 weights
        if not int8_kernels():
            raise ValueError("int8 inference needs torch's oneDNN int8 kernels, which this torch build lacks")
        for block in _transformer_blocks(model):
            a, f = block.attention, block.feed_forward
            a.qkv.forward, a.out_proj.forward = _Int8Linear(a.qkv, float_dtype), _Int8Linear(a.out_proj, float_dtype)
            f.forward = _FusedFeedForward(_Int8Linear(f.fc1, float_dtype, gelu=True), _Int8Linear(f.fc2, float_dtype))
            _release(a.qkv, a.out_proj, f.fc1, f.fc2)
    if float_dtype != torch.float32:
        for m in model.modules():
            if id(m) not in kept and isinstance(m, (nn.Linear, nn.Conv1d, ChannelsLastConv1d)):
                m.to(float_dtype)
    if kernels and on_cpu and float_dtype == torch.bfloat16 and onednn_kernels():
        _rewrite_cnn(model, kept)
        model.encoder.pos_conv.forward = _PackedPositionalConv(model.encoder.pos_conv)
        _release(*(layer.conv for layer in model.encoder.pos_conv.layers))
        if dtype != INT8:
            for block in _transformer_blocks(model):
                a, f = block.attention, block.feed_forward
                a.qkv.forward, a.out_proj.forward = _PackedLinear(a.qkv), _PackedLinear(a.out_proj)
                f.forward = _FusedFeedForward(_PackedLinear(f.fc1, gelu=True), _PackedLinear(f.fc2))
                _release(a.qkv, a.out_proj, f.fc1, f.fc2)
    return model


def _rewrite_cnn(model, kept: set[int]) -> None:
    """bf16 CNN layers as :class:`_PackedConvBlock`; a first layer kept in fp32 as :class:`_FoldedFirstConv`. Each
    layer writes the dtype the next one reads (bf16 into a bf16 layer, fp32 into an fp32 one)."""
    layers = list(model.feature_extractor.layers)
    reads_bf16 = [id(layer) not in kept for layer in layers] + [False]
    for i, layer in enumerate(layers):
        out = torch.bfloat16 if reads_bf16[i + 1] else torch.float32
        if reads_bf16[i]:
            layer.forward = _PackedConvBlock(layer, out)
            _release(layer.conv)
        elif i == 0 and layer.conv.weight.shape[1] == 1:
            layer.forward = _FoldedFirstConv(layer, out)
            _release(layer.conv)
