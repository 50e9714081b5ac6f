"""Architecture: presets, parameter counts, key layout of the official files, attention paths, padding."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from emotion2vec.models.checkpoint import official_to_ours
from emotion2vec.models.config import ConfigError, Emotion2VecConfig, config_from_fairseq, parse_conv_spec, preset
from emotion2vec.models import Emotion2VecModel, alibi_slopes

from conftest import SHARED, require


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", [("emotion2vec_base", 93_790_988), ("data2vec2_base", 93_783_308),
                                           ("data2vec2_base_8x4", 93_783_308)])
def test_base_parameter_counts_match_the_paper(name, expected):
    assert n_params(Emotion2VecModel(preset(name))) == expected


def test_parameter_breakdown_of_emotion2vec_base():
    m = Emotion2VecModel(preset("emotion2vec_base"))
    assert n_params(m.feature_extractor) == 4_206_592
    assert n_params(m.feature_projection) == 395_008
    assert n_params(m.encoder.pos_conv) == 3_505_920
    assert n_params(m.encoder.prenet[0]) == 7_087_872
    assert n_params(m.decoder) == 619_776
    assert m.encoder.extra_tokens.shape == (1, 10, 768) and m.encoder.alibi_scale.shape == (1, 1, 12, 1, 1)


@pytest.mark.parametrize("keys_file,preset_name", [("emotion2vec_base_keys.txt", "emotion2vec_base"),
                                                   ("data2vec2_base_keys.txt", "data2vec2_base")])
def test_every_official_tensor_maps_onto_our_model_with_its_shape(keys_file, preset_name):
    path = require(SHARED / "spec" / keys_file, "official key dump")
    ours = {k: tuple(v.shape) for k, v in Emotion2VecModel(preset(preset_name)).state_dict().items()}
    mapped = {}
    for line in path.read_text().splitlines():
        m = re.match(r"(\S+) \(([\d, ]*)\)", line)
        if not m:
            continue
        key, shape = m[1], tuple(int(v) for v in m[2].split(",") if v.strip())
        target = official_to_ours(key)
        assert target is not None, key
        if target.endswith("alibi_scale") and len(shape) == 4:
            shape = (1,) + shape
        mapped[target] = shape
    assert mapped == ours


def test_alibi_slopes_for_12_heads():
    expected = [2 ** -i for i in range(1, 9)] + [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5]
    assert alibi_slopes(12) == pytest.approx(expected, rel=1e-12)
    assert alibi_slopes(8) == pytest.approx([2 ** -i for i in range(1, 9)])


@pytest.mark.parametrize("n,frames", [(16000, 49), (16320, 50), (8000, 24), (320000, 999), (400, 1), (399, 0)])
def test_frame_count_formula(n, frames):
    cfg = preset("emotion2vec_base")
    assert cfg.num_frames(n) == frames
    m = Emotion2VecModel(preset("small"))
    assert int(m.feature_extractor.output_lengths(torch.tensor([n]))[0]) == frames
    if n >= 400:
        with torch.no_grad():
            assert m.feature_extractor(torch.zeros(1, n)).shape[1] == frames


def test_conv_spec_parser_refuses_code():
    assert parse_conv_spec("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    with pytest.raises(ValueError):
        parse_conv_spec("__import__('os').system('true')")
    with pytest.raises(ConfigError, match="feature_encoder_spec"):
        Emotion2VecConfig(feature_encoder_spec="[(1, 2)]")


def test_unsupported_official_options_are_refused_by_name():
    with pytest.raises(ConfigError, match="layer_norm_first"):
        config_from_fairseq({"layer_norm_first": True, "depth": 2})
    with pytest.raises(ConfigError, match="extractor_mode"):
        config_from_fairseq({"modalities": {"audio": {"extractor_mode": "default"}}})
    cfg = config_from_fairseq({"depth": 3, "norm_eps": "1e-05", "some_future_key": 1,
                               "modalities": {"audio": {"prenet_depth": 0, "num_extra_tokens": 0}}},
                              {"normalize": False, "rebuild_batches": True})
    assert (cfg.depth, cfg.prenet_depth, cfg.norm_eps, cfg.normalize) == (3, 0, 1e-5, False)


def _random_model(seed=0, **overrides):
    torch.manual_seed(seed)
    m = Emotion2VecModel(preset("small", **overrides)).eval()
    with torch.no_grad():  # non-trivial weights everywhere (LayerNorm affine, alibi scale, extra tokens)
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def _padded(wavs):
    n = max(len(w) for w in wavs)
    batch, pad = torch.zeros(len(wavs), n), torch.ones(len(wavs), n, dtype=torch.bool)
    for i, w in enumerate(wavs):
        batch[i, :len(w)], pad[i, :len(w)] = w, False
    return batch, pad


def test_sdpa_and_reference_attention_agree():
    m = _random_model(learned_alibi_scale_per_layer=True)
    torch.manual_seed(1)
    batch, pad = _padded([torch.randn(n) for n in (16000, 9000, 24000)])
    with torch.no_grad():
        a = m.set_attention_implementation("sdpa").extract_features(batch, pad, ffn=None)
        b = m.set_attention_implementation("eager").extract_features(batch, pad, ffn=None)
    valid = ~a.padding_mask
    assert (a.x - b.x)[valid].abs().max() < 1e-5
    for la, lb in zip(a.ffn_outputs, b.ffn_outputs):
        assert (la - lb)[valid].abs().max() < 1e-5


@pytest.mark.parametrize("reference", [False, True])
def test_batched_padded_equals_one_by_one(reference):
    m = _random_model()
    torch.manual_seed(2)
    wavs = [torch.randn(n) for n in (24000, 400, 5000, 16001, 12345)]
    batch, pad = _padded(wavs)
    with torch.no_grad():
        m.set_attention_implementation("eager" if reference else "sdpa")
        out = m.extract_features(batch, pad, ffn=None)
        for i, w in enumerate(wavs):
            single = m.extract_features(w[None], ffn=None)
            T = single.x.shape[1]
            assert int((~out.padding_mask[i]).sum()) == T
            assert (out.x[i, :T] - single.x[0]).abs().max() < 1e-5
            for lb, ls in zip(out.layer_outputs + out.ffn_outputs, single.layer_outputs + single.ffn_outputs):
                assert (lb[i, :T] - ls[0]).abs().max() < 1e-5
