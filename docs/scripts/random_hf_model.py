"""A random-weight Hugging Face model of a class emotion2vec reads (``hf:`` / ``text:`` upstreams), saved with
``save_pretrained``: a pipeline check that needs no download. Its features carry no emotion knowledge beyond what
random convolutions keep, so figures made with it measure the pipeline, not a model.

    python docs/scripts/random_hf_model.py wav2vec2 checkpoints/hf_wav2vec2_random
    python docs/scripts/random_hf_model.py wavlm checkpoints/wavlm_random --hidden 32 --layers 2 --conv-dim 16
    python docs/scripts/random_hf_model.py bert checkpoints/bert_random        # for --checkpoint text:PATH

Kinds: wav2vec2, wav2vec2-large (layer-norm front end, pre-LN blocks), hubert, wavlm, wavlm-large, data2vec-audio,
unispeech, unispeech-sat (both large-like, as the released ones), whisper (encoder-decoder; emotion2vec reads the encoder), bert (with a small word-piece vocabulary). Defaults:
128 dimensions, 4 blocks, 4 heads, the published front end (7 convolutions of 512 channels); the same seed gives the
same weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

KINDS = ("wav2vec2", "wav2vec2-large", "hubert", "wavlm", "wavlm-large", "data2vec-audio", "unispeech",
         "unispeech-sat", "whisper", "bert")
BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "you", "we", "am", "are", "is", "so", "not", "very",
              "happy", "sad", "angry", "calm", "today", "what", "no", "yes", "well", "the", "a", "that", ".", ",",
              "?", "!"]


def build(kind: str, out: str | Path, hidden: int = 128, layers: int = 4, heads: int = 4,
          conv_dim: int = 512, seed: int = 0) -> Path:
    """Write a random model of ``kind`` to ``out`` and return ``out``."""
    import torch
    import transformers as t

    if kind not in KINDS:
        raise SystemExit(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    speech = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=4 * hidden, conv_dim=(conv_dim,) * 7,
                  num_conv_pos_embeddings=16 if conv_dim < 512 else 128, num_conv_pos_embedding_groups=4)
    large = dict(feat_extract_norm="layer", do_stable_layer_norm=True)
    if kind == "wav2vec2":
        model = t.Wav2Vec2Model(t.Wav2Vec2Config(**speech))
    elif kind == "wav2vec2-large":
        model = t.Wav2Vec2Model(t.Wav2Vec2Config(**speech, **large))
    elif kind == "hubert":
        model = t.HubertModel(t.HubertConfig(**speech))
    elif kind in ("wavlm", "wavlm-large"):
        extra = large if kind == "wavlm-large" else {}
        model = t.WavLMModel(t.WavLMConfig(**speech, **extra, num_buckets=16, max_bucket_distance=50))
    elif kind == "data2vec-audio":
        model = t.Data2VecAudioModel(t.Data2VecAudioConfig(**{**speech, "num_conv_pos_embeddings": 5}))
    elif kind == "unispeech":
        model = t.UniSpeechModel(t.UniSpeechConfig(**speech, **large))
    elif kind == "unispeech-sat":
        model = t.UniSpeechSatModel(t.UniSpeechSatConfig(**speech, **large))
    elif kind == "whisper":
        model = t.WhisperModel(t.WhisperConfig(
            d_model=hidden, encoder_layers=layers, decoder_layers=1, encoder_attention_heads=heads,
            decoder_attention_heads=heads, encoder_ffn_dim=4 * hidden, decoder_ffn_dim=4 * hidden, num_mel_bins=80,
            vocab_size=100, max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1))
    else:
        (out / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
        t.BertTokenizer(str(out / "vocab.txt")).save_pretrained(str(out))
        model = t.BertModel(t.BertConfig(vocab_size=len(BERT_WORDS), hidden_size=hidden, num_hidden_layers=layers,
                                         num_attention_heads=heads, intermediate_size=4 * hidden,
                                         max_position_embeddings=64))
    model.save_pretrained(str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS)
    p.add_argument("out", help="folder to write (config.json, model.safetensors; bert: also the tokenizer)")
    p.add_argument("--hidden", type=int, default=128, help="model width (default 128)")
    p.add_argument("--layers", type=int, default=4, help="transformer blocks (default 4)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--conv-dim", type=int, default=512, help="channels of the 7 front-end convolutions (default 512)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(build(a.kind, a.out, a.hidden, a.layers, a.heads, a.conv_dim, a.seed))


if __name__ == "__main__":
    main()
