"""The arithmetic floor the speed benchmarks report (benchmarks/_floor.py) counts what torch's own FLOP counter
counts for a forward of the model: every matrix product and convolution, extra tokens and all blocks included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from emotion2vec.models.config import preset
from emotion2vec.models.encoder import Emotion2VecModel

_FLOOR = Path(__file__).resolve().parents[1] / "benchmarks" / "_floor.py"
_spec = importlib.util.spec_from_file_location("_floor", _FLOOR)
_floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_floor)
floor_seconds, forward_flops = _floor.floor_seconds, _floor.forward_flops


@pytest.mark.parametrize("name,samples", [("small", 16000 * 2 + 123), ("emotion2vec_base", 16000 + 7)])
def test_forward_flops_equal_torchs_flop_counter(name, samples):
    cfg = preset(name)
    torch.manual_seed(0)
    model = Emotion2VecModel(cfg, with_decoder=False).eval()
    model.set_attention_implementation("eager")  # the counter has a formula for every op of this path
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.extract_features(torch.randn(1, samples), layers=[cfg.num_layers - 1], ffn=())
    parts = forward_flops(cfg, samples)
    assert sum(parts.values()) == counter.get_total_flops()
    assert all(v > 0 for v in parts.values()), parts


def test_floor_seconds_per_dtype():
    parts = {"cnn": 4e9, "cnn_fp32": 1e9, "projection": 0.0, "pos_conv": 1e9, "linears": 8e9, "attention": 2e9}
    rates = {"fp32": 100.0, "bf16": 400.0, "int8": 800.0}
    assert floor_seconds(parts, "float32", rates) == pytest.approx(16e9 / 100e9)
    assert floor_seconds(parts, "bfloat16", rates) == pytest.approx(16e9 / 400e9)
    # int8: the linear layers at the int8 rate, the rest at bf16's where the CPU has bf16 units, else fp32's
    assert floor_seconds(parts, "int8", rates, bf16_units=True) == pytest.approx(8e9 / 800e9 + 8e9 / 400e9)
    assert floor_seconds(parts, "int8", rates, bf16_units=False) == pytest.approx(8e9 / 800e9 + 8e9 / 100e9)
