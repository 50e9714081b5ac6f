"""``emotion2vec linguistics MODEL --out DIR``: does a valence model react to words spoken with neutral prosody?"""

from __future__ import annotations

import argparse
import textwrap

from .options import device, non_negative_int, positive_int

EXAMPLES = """
examples:
  emotion2vec linguistics results/msp/valence/models/holdout --out results/msp/linguistics
  emotion2vec linguistics MODEL --data manifests/msp_podcast --out DIR --top 50 --min-count 10 --transcripts 500
  emotion2vec linguistics MODEL --positive wonderful,great --negative stupid,awful --neutral afternoon,wall \\
      --template 'This is {word}.' --template 'I find it {word}.' --out DIR
  emotion2vec linguistics MODEL --tts-command 'espeak-ng -v en-us -w {out} {text}' --out DIR"""

OUTPUTS = {"out": "dir"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = textwrap.fill(
        "Wagner et al.'s linguistic-sensitivity test (Section 5.3): sentences with positive, negative and neutral "
        "words rendered by a text-to-speech engine with neutral prosody, and the valence the model predicts per "
        "word class (a model that hears only how things are said gives every class about the same value). With "
        "--data, the word classes come from the corpus's transcripts: the words with the highest / lowest / most "
        "central mean rating. With --transcripts N, N transcripts of the test split are rendered whole and the "
        "model's valence on them and on the original audio is compared with the ratings (CCC).", 100)
    p.epilog = textwrap.fill(
        "MODEL: a model that predicts valence (a regression model from `emotion2vec finetune --task regression "
        "--targets valence`, or any export whose head has a valence output: --target names it). TTS: eSpeak NG from "
        "the espeakng-loader wheel (pip install 'emotion2vec[tts]', nothing downloaded at run time), or any program "
        "with --tts-command, a template with {text} and {out} (a .wav to write), run without a shell. Outputs in "
        "--out: sentences.tsv, words.tsv (--data), transcripts.tsv (--transcripts), results.md, linguistics.png, "
        "linguistics.json, audio/ (the rendered sentences).", 100) + "\n" + EXAMPLES
    p.add_argument("model", metavar="MODEL", help="a model that predicts valence")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--target", default=None, help="the model's valence output (default: 'valence', or its only one)")
    words = p.add_argument_group("words and sentences (default: built-in lists with the paper's examples)")
    words.add_argument("--positive", default=None, metavar="W,W,...", help="positive words")
    words.add_argument("--negative", default=None, metavar="W,W,...", help="negative words")
    words.add_argument("--neutral", default=None, metavar="W,W,...", help="neutral words")
    words.add_argument("--template", action="append", default=None, metavar="TEXT",
                       help="sentence template with {word} (repeatable; default 'This is {word}.')")
    words.add_argument("--sentences", default=None, metavar="TSV",
                       help="your own sentences: a TSV with the header class<TAB>word<TAB>sentence")
    corpus = p.add_argument_group("word ranking and transcripts of a corpus")
    corpus.add_argument("--data", default=None, metavar="MANIFEST_DIR",
                        help="a prepared corpus whose data.tsv has transcripts and ratings (e.g. MSP-Podcast)")
    corpus.add_argument("--text-column", default="text", help="transcript column (default text)")
    corpus.add_argument("--rating-column", default=None, help="rating column (default: the target's name)")
    corpus.add_argument("--split", default="train", help="rows the ranking reads (default train; '' = all)")
    corpus.add_argument("--min-count", type=positive_int, default=10,
                        help="occurrences a ranked word needs (default 10)")
    corpus.add_argument("--top", type=positive_int, default=50, help="words per class (default 50)")
    corpus.add_argument("--keep-stopwords", action="store_true", help="rank English function words too")
    corpus.add_argument("--transcripts", type=non_negative_int, default=0, metavar="N",
                        help="render N transcripts of --transcripts-split whole and compare with the originals")
    corpus.add_argument("--transcripts-split", default="test", help="(default test; '' = all rows)")
    tts = p.add_argument_group("text to speech")
    tts.add_argument("--tts-command", default=None, metavar="TEMPLATE",
                     help="a TTS program instead of eSpeak NG, e.g. 'espeak-ng -w {out} {text}'")
    tts.add_argument("--voice", default="en", help="eSpeak voice (default en)")
    tts.add_argument("--rate", type=positive_int, default=None, help="eSpeak words per minute (default eSpeak's, 175)")
    tts.add_argument("--pitch", type=non_negative_int, default=None, help="eSpeak base pitch 0-100 (default eSpeak's)")
    tts.add_argument("--pitch-range", type=non_negative_int, default=None,
                     help="eSpeak pitch range 0-100 (default eSpeak's; 0 = monotone)")
    p.add_argument("--device", type=device(), default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow arbitrary pickled objects (runs code!)")
    p.add_argument("--quiet", action="store_true", help="print only the tables")


def _words(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]


def run(args: argparse.Namespace) -> int:
    import sys

    from ..analysis import AnalysisError
    from ..analysis.linguistics import DEFAULT_TEMPLATES, read_sentences, run_linguistics
    from ..analysis.tts import make_tts

    given = {c: _words(getattr(args, c)) for c in ("positive", "neutral", "negative")}
    classes = given if any(given.values()) else None
    if args.sentences and (classes or args.template):
        raise AnalysisError("--sentences gives whole sentences: drop --positive/--negative/--neutral/--template")
    sentences = read_sentences(args.sentences) if args.sentences else None
    tts = make_tts(args.tts_command, args.voice, args.rate, args.pitch, args.pitch_range)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    run_linguistics(args.model, args.out, tts, sentences=sentences, classes=classes,
                    templates=args.template or DEFAULT_TEMPLATES, data=args.data, text_column=args.text_column,
                    rating_column=args.rating_column, split=args.split or None, min_count=args.min_count,
                    top=args.top, keep_stopwords=args.keep_stopwords, transcripts=args.transcripts,
                    transcripts_split=args.transcripts_split, target=args.target, device=args.device,
                    trust=args.trust_checkpoint, log=log)
    from pathlib import Path

    print(Path(args.out, "results.md").read_text(encoding="utf-8"), end="")
    return 0
