"""Does a model hear words? Wagner et al.'s linguistic-sensitivity test (their Section 5.3, Figures 10-11).

A model that predicts valence from audio alone may have learnt which words carry sentiment. The test removes the
paralinguistic cue: sentences are rendered by a text-to-speech engine whose prosody carries no emotion, so a model
that listens only to how something is said should give every sentence about the same valence (the middle of the
scale, .5 on the [0, 1] valence of our corpora), and one that also listens to what is said ranks them by their words.

1. Word ranking (Figure 10a), from a corpus's transcripts (``data.tsv`` with ``text`` and a rating column such as
   ``valence``; the training split by default): every word (lower-case; English function words left out unless
   asked) that occurs at least ``min_count`` times gets the mean rating of the utterances it occurs in (once per
   occurrence). The ``top`` highest are the *positive* words, the ``top`` lowest the *negative* ones, and the
   ``top`` words whose mean lies closest to the mean rating of all utterances the *neutral* ones.
2. Sentences (Figure 10b): each word of each class in each template (``This is {word}.`` by default), or sentences
   the user writes (a TSV with ``class``, ``word``, ``sentence``); without a corpus, built-in word lists (the
   paper's examples and a few more).
3. The model's valence per sentence, per word and per class (n, mean, standard deviation), and the spread between
   the classes: the mean of the positive sentences minus that of the negative ones (near 0: insensitive to words).
4. Optionally (Figures 10c and 11), transcripts of the corpus's test split rendered whole: the model's valence on
   the original audio and on its synthetic copy, each against the rated valence (CCC), and the three distributions.

Outputs in ``out``: ``sentences.tsv``, ``words.tsv`` (with a corpus), ``transcripts.tsv`` (with rendered
transcripts), ``results.md`` (the tables), ``linguistics.png`` (predictions per class, and the distributions),
``linguistics.json`` (everything, with the settings), ``audio/`` (the rendered sentences, 16 kHz). A folder that
holds a run with other settings is refused.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import AnalysisError

__all__ = ["DEFAULT_WORDS", "DEFAULT_TEMPLATES", "STOPWORDS", "CLASSES", "WordScore", "Sentence", "tokenize",
           "rank_words", "word_classes", "make_sentences", "read_sentences", "class_summary", "run_linguistics",
           "LINGUISTICS_FORMAT"]

LINGUISTICS_FORMAT = "emotion2vec-linguistics"
CLASSES = ("positive", "neutral", "negative")
DEFAULT_TEMPLATES = ("This is {word}.",)
#: the paper's four example words (wonderful, stupid, afternoon, wall) and a few of the same kind
DEFAULT_WORDS = {
    "positive": ["wonderful", "great", "amazing", "lovely", "fantastic", "excellent"],
    "negative": ["stupid", "terrible", "awful", "horrible", "disgusting", "ridiculous"],
    "neutral": ["afternoon", "wall", "table", "window", "paper", "corner"],
}
#: English function words left out of the word ranking (they occur everywhere, so their means sit at the corpus mean)
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both but by
can could did do does doing down during each few for from further had has have having he her here hers herself him
himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other
our ours ourselves out over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which while who whom why will
with would you your yours yourself yourselves im ive id ill youre youve theyre thats dont didnt doesnt isnt wasnt
cant wont its uh um oh yeah like know gonna okay ok yes
""".split())
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


@dataclass
class WordScore:
    word: str
    count: int
    mean: float  # mean rating of the utterances it occurs in (once per occurrence)
    word_class: str = ""


@dataclass
class Sentence:
    word_class: str
    word: str
    text: str
    audio: str = ""
    valence: float = float("nan")


def tokenize(text: str) -> list[str]:
    """Lower-case words (letters, with inner apostrophes folded away: ``don't`` -> ``dont``)."""
    return [w.replace("'", "").replace("\u2019", "") for w in _WORD.findall(str(text).lower())]


def rank_words(rows: Sequence[Mapping[str, Any]], text_column: str = "text", rating_column: str = "valence",
               min_count: int = 10, stopwords: frozenset[str] | set[str] = STOPWORDS) -> tuple[list[WordScore], float]:
    """Words of ``rows`` occurring at least ``min_count`` times, highest mean rating first. -> (ranking, the mean
    rating of all utterances with a transcript)."""
    if min_count < 1:
        raise AnalysisError(f"--min-count {min_count}: must be at least 1")
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    ratings = []
    for row in rows:
        text = (row.get(text_column) or "").strip()
        raw = (row.get(rating_column) or "").strip()
        if not text or not raw:
            continue
        try:
            rating = float(raw)
        except ValueError:
            raise AnalysisError(f"row {row.get('key')!r}: {rating_column} {raw!r} is not a number") from None
        ratings.append(rating)
        for word in tokenize(text):
            if word not in stopwords:
                total[word] += rating
                count[word] += 1
    if not ratings:
        raise AnalysisError(f"no utterance has both a {text_column!r} transcript and a {rating_column!r} rating")
    ranking = [WordScore(w, count[w], total[w] / count[w]) for w in count if count[w] >= min_count]
    if not ranking:
        raise AnalysisError(f"no word occurs {min_count} times or more in the {len(ratings)} transcripts "
                            f"(lower --min-count)")
    ranking.sort(key=lambda s: (-s.mean, -s.count, s.word))
    return ranking, float(np.mean(ratings))


def word_classes(ranking: list[WordScore], center: float, top: int = 50) -> dict[str, list[str]]:
    """The ``top`` highest (positive), lowest (negative) and closest to ``center`` (neutral) words of a ranking; a
    word is in one class only (positive, then negative, then neutral), and each class gets at most a third of a
    short ranking. Marks ``word_class`` on the ranking's entries."""
    if top < 1:
        raise AnalysisError(f"--top {top}: must be at least 1")
    k = min(top, max(1, len(ranking) // 3))
    positive = [s.word for s in ranking[:k]]
    negative = [s.word for s in ranking[::-1][:k] if s.word not in positive]
    taken = set(positive) | set(negative)
    neutral = [s.word for s in sorted(ranking, key=lambda s: (abs(s.mean - center), -s.count, s.word))
               if s.word not in taken][:k]
    classes = {"positive": positive, "neutral": neutral, "negative": negative}
    of = {w: c for c, words in classes.items() for w in words}
    for s in ranking:
        s.word_class = of.get(s.word, "")
    return classes


def make_sentences(classes: Mapping[str, Sequence[str]], templates: Sequence[str] = DEFAULT_TEMPLATES
                   ) -> list[Sentence]:
    """Every word of every class in every template (``{word}`` marks where it goes)."""
    bad = [t for t in templates if "{word}" not in t]
    if bad or not templates:
        raise AnalysisError(f"--template {bad[0] if bad else ''!r}: a template needs {{word}} where the word goes")
    out = []
    for c in CLASSES:
        for word in classes.get(c) or []:
            for t in templates:
                out.append(Sentence(c, word, t.replace("{word}", word)))
    if not out:
        raise AnalysisError("no words to render")
    return out


def read_sentences(path: str | Path) -> list[Sentence]:
    """A TSV with the header ``class<TAB>word<TAB>sentence``; class is positive, neutral or negative."""
    import csv

    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
            header = list(rows[0].keys()) if rows else []
    except OSError as e:
        raise AnalysisError(f"--sentences {path}: cannot read: {e.strerror or e}") from None
    if not {"class", "word", "sentence"} <= set(header):
        raise AnalysisError(f"--sentences {path}: needs the header class<TAB>word<TAB>sentence (got {header})")
    out = []
    for i, row in enumerate(rows, start=2):
        c = (row["class"] or "").strip().lower()
        if c not in CLASSES:
            raise AnalysisError(f"--sentences {path}:{i}: class {row['class']!r} is not one of {', '.join(CLASSES)}")
        if not (row["sentence"] or "").strip():
            raise AnalysisError(f"--sentences {path}:{i}: empty sentence")
        out.append(Sentence(c, (row["word"] or "").strip(), row["sentence"].strip()))
    if not out:
        raise AnalysisError(f"--sentences {path}: no sentences")
    return out


def class_summary(sentences: Sequence[Sentence]) -> dict[str, dict[str, float]]:
    """Per class: n, mean, std (population), min and max of the predicted valence; ``spread`` = positive mean -
    negative mean (when both exist)."""
    out: dict[str, Any] = {}
    for c in CLASSES:
        v = np.array([s.valence for s in sentences if s.word_class == c], dtype=float)
        if len(v):
            out[c] = {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
                      "max": float(v.max())}
    if "positive" in out and "negative" in out:
        out["spread"] = out["positive"]["mean"] - out["negative"]["mean"]
    return out


def _word_means(sentences: Sequence[Sentence]) -> list[tuple[str, str, float, int]]:
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in sentences:
        by[(s.word_class, s.word)].append(s.valence)
    rows = [(c, w, float(np.mean(v)), len(v)) for (c, w), v in by.items()]
    return sorted(rows, key=lambda r: -r[2])


# ------------------------------------------------------------------------------------------------ outputs
def _tsv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.6f}"
        return " ".join(str(v).split())
    return "\n".join(["\t".join(header)] + ["\t".join(cell(v) for v in r) for r in rows]) + "\n"


def _markdown(result: Mapping[str, Any]) -> str:
    lines = [f"# Linguistic sensitivity of `{result['model']}` ({result['target']})", "",
             f"TTS: {result['tts']['tts']}" + (f" ({result['tts'].get('voice')})" if result['tts'].get('voice')
                                                else f" (`{result['tts'].get('command')}`)"), "",
             "| class | sentences | mean valence | std | min | max |", "|---|---:|---:|---:|---:|---:|"]
    for c in CLASSES:
        s = result["summary"].get(c)
        if s:
            lines.append(f"| {c} | {s['n']} | {s['mean']:.3f} | {s['std']:.3f} | {s['min']:.3f} | {s['max']:.3f} |")
    if "spread" in result["summary"]:
        lines += ["", f"Spread (positive - negative mean): **{result['summary']['spread']:+.3f}** (near 0: the model "
                      f"does not react to the words)"]
    lines += ["", "| word | class | mean valence | sentences |", "|---|---|---:|---:|"]
    lines += [f"| {w} | {c} | {v:.3f} | {n} |" for c, w, v, n in result["words_predicted"]]
    if result.get("ranking"):
        r = result["ranking"]
        lines += ["", f"Word ranking: {r['words']} words with >= {r['min_count']} occurrences in {r['utterances']} "
                      f"transcripts (mean {r['column']} {r['center']:.3f}); classes of {r['top']} words each."]
    t = result.get("transcripts")
    if t:
        lines += ["", f"Transcripts rendered by TTS ({t['n']} of the {t['split']} split): CCC with the rated "
                      f"{result['target']}", "", "| audio | CCC | mean | std |", "|---|---:|---:|---:|",
                  f"| original | {t['ccc_original']:.3f} | {t['mean_original']:.3f} | {t['std_original']:.3f} |",
                  f"| synthetic | {t['ccc_synthetic']:.3f} | {t['mean_synthetic']:.3f} | {t['std_synthetic']:.3f} |",
                  f"| (rated) | | {t['mean_rated']:.3f} | {t['std_rated']:.3f} |"]
    return "\n".join(lines) + "\n"


def _png(sentences: Sequence[Sentence], transcripts: Mapping[str, np.ndarray] | None, title: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if transcripts else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    present = [c for c in CLASSES if any(s.word_class == c for s in sentences)]
    colors = {"positive": "tab:green", "neutral": "tab:gray", "negative": "tab:red"}
    for i, c in enumerate(present):
        v = np.array([s.valence for s in sentences if s.word_class == c])
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(v))
        ax.scatter(np.full(len(v), i) + jitter, v, s=14, alpha=0.7, color=colors[c])
        ax.hlines(v.mean(), i - 0.3, i + 0.3, color="black")
    ax.axhline(0.5, ls="--", lw=0.8, color="gray")
    ax.set_xticks(range(len(present)), present)
    ax.set_ylabel("predicted valence")
    ax.set_title("TTS sentences per word class")
    if transcripts:
        ax = axes[0][1]
        bins = np.linspace(0, 1, 26)
        for name, v in transcripts.items():
            ax.hist(np.clip(v, 0, 1), bins=bins, histtype="step", density=True, label=name)
        ax.set_xlabel("valence")
        ax.set_title("rated vs predicted (original, synthetic)")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------ the test
def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name, flags=re.UNICODE)[:60] or "x"


def run_linguistics(model: str, out: str | Path, tts, sentences: Sequence[Sentence] | None = None,
                    classes: Mapping[str, Sequence[str]] | None = None, templates: Sequence[str] = DEFAULT_TEMPLATES,
                    data: str | Path | None = None, text_column: str = "text", rating_column: str | None = None,
                    split: str | None = "train", min_count: int = 10, top: int = 50, keep_stopwords: bool = False,
                    transcripts: int = 0, transcripts_split: str = "test", target: str | None = None,
                    device: str = "cpu", trust: bool = False, log: Callable[[str], None] = lambda m: None
                    ) -> dict[str, Any]:
    """The whole test (see the module docstring) -> the result written to ``out/linguistics.json``.

    Words come from ``sentences`` (given), else ``classes`` (given), else the ranking of ``data``'s transcripts, else
    :data:`DEFAULT_WORDS`. ``rating_column`` defaults to the target. ``transcripts`` > 0 renders up to that many
    transcripts of ``transcripts_split`` (in key order) and compares the model on them with the original audio.
    """
    from ..api import Emotion2Vec
    from ..downstream.metrics import ccc
    from ..io.atomic import atomic_write_bytes, atomic_write_text
    from ..io.audio import SAMPLE_RATE, write_audio
    from ..io.manifests import read_data_tsv
    from .tts import render16k

    out = Path(out)
    api = Emotion2Vec.from_checkpoint(model, device=device, trust=trust)
    rec = api.recognizer
    if rec is None or not rec.regression:
        what = "no head" if rec is None else "a classification head"
        raise AnalysisError(f"{model}: has {what}; the linguistic test needs a model that predicts valence (a "
                            f"regression model: `emotion2vec finetune --task regression --targets valence`)")
    targets = list(rec.labels)
    if target is None:
        target = "valence" if "valence" in targets else (targets[0] if len(targets) == 1 else None)
        if target is None:
            raise AnalysisError(f"{model} predicts {', '.join(targets)}: name the valence output with --target")
    elif target not in targets:
        raise AnalysisError(f"--target {target}: {model} predicts {', '.join(targets)}")
    column = rating_column or target
    rows: list[dict] = []
    if data is not None:
        rows = read_data_tsv(data)
        for name in (text_column, column):
            if name not in rows[0]:
                raise AnalysisError(f"{data}: no column {name!r} (columns: {', '.join(rows[0])})")

    ranking, ranking_info = [], None
    if sentences is None:
        if classes is None and rows:
            chosen = [r for r in rows if split is None or r.get("split", "") == split]
            if not chosen:
                raise AnalysisError(f"{data}: no rows of split {split!r} (use --split '' for all rows)")
            ranking, center = rank_words(chosen, text_column, column, min_count,
                                         frozenset() if keep_stopwords else STOPWORDS)
            classes = word_classes(ranking, center, top)
            ranking_info = {"column": column, "split": split, "min_count": min_count, "top": top,
                            "utterances": sum(1 for r in chosen if (r.get(text_column) or "").strip()),
                            "words": len(ranking), "center": center}
        sentences = make_sentences(classes or DEFAULT_WORDS, templates)
    sentences = [Sentence(**asdict(s)) for s in sentences]

    settings = {"model": str(model), "target": target, "tts": tts.settings(),
                "sentences": [(s.word_class, s.word, s.text) for s in sentences], "data": str(data) if data else None,
                "transcripts": transcripts, "transcripts_split": transcripts_split}
    previous = out / "linguistics.json"
    if previous.is_file():
        try:
            old = json.loads(previous.read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError):
            old = None
        if old != json.loads(json.dumps(settings)):
            raise AnalysisError(f"{out} holds a linguistic test made with other settings (model, TTS, sentences or "
                                f"transcripts); give another --out")
    (out / "audio").mkdir(parents=True, exist_ok=True)

    log(f"linguistics: rendering {len(sentences)} sentences with {tts.name}")
    wavs = []
    for i, s in enumerate(sentences):
        wav = render16k(tts, s.text)
        s.audio = f"audio/{i:04d}_{s.word_class}_{_safe(s.word)}.wav"
        write_audio(out / s.audio, wav, SAMPLE_RATE, subtype="FLOAT")
        wavs.append(wav)
    for s, r in zip(sentences, api.predict(wavs, sample_rate=SAMPLE_RATE)):
        s.valence = float(r["values"][target])

    result: dict[str, Any] = {"format": LINGUISTICS_FORMAT, "settings": settings, "model": str(model),
                              "target": target, "tts": tts.settings(), "summary": class_summary(sentences),
                              "words_predicted": _word_means(sentences), "ranking": ranking_info,
                              "sentences": [asdict(s) for s in sentences]}
    dists = None
    if transcripts > 0:
        if not rows:
            raise AnalysisError("--transcripts needs --data (a data.tsv with transcripts and ratings)")
        chosen = [r for r in rows if (not transcripts_split or r.get("split", "") == transcripts_split)
                  and (r.get(text_column) or "").strip() and (r.get(column) or "").strip()]
        chosen = sorted(chosen, key=lambda r: r["key"])[:transcripts]
        if len(chosen) < 2:
            raise AnalysisError(f"--transcripts: {len(chosen)} row(s) of split {transcripts_split!r} have a transcript "
                                f"and a {column!r} rating; at least 2 are needed")
        log(f"linguistics: rendering {len(chosen)} transcripts of the {transcripts_split or 'whole'} set")
        synthetic = [render16k(tts, r[text_column]) for r in chosen]
        syn = np.array([r["values"][target] for r in api.predict(synthetic, sample_rate=SAMPLE_RATE)])
        orig = np.array([r["values"][target] for r in api.predict([r["path"] for r in chosen])])
        rated = np.array([float(r[column]) for r in chosen])
        result["transcripts"] = {
            "split": transcripts_split, "n": len(chosen), "ccc_original": float(ccc(orig, rated)),
            "ccc_synthetic": float(ccc(syn, rated)), "mean_original": float(orig.mean()),
            "std_original": float(orig.std()), "mean_synthetic": float(syn.mean()), "std_synthetic": float(syn.std()),
            "mean_rated": float(rated.mean()), "std_rated": float(rated.std())}
        atomic_write_text(out / "transcripts.tsv", _tsv(
            ["key", column, "original", "synthetic", "text"],
            [(r["key"], float(y), float(a), float(b), r[text_column]) for r, y, a, b in zip(chosen, rated, orig, syn)]))
        dists = {"rated": rated, "original": orig, "synthetic": syn}
    if ranking:
        atomic_write_text(out / "words.tsv", _tsv(["rank", "word", "count", f"mean_{column}", "class"],
                                                  [(i + 1, s.word, s.count, s.mean, s.word_class)
                                                   for i, s in enumerate(ranking)]))
    atomic_write_text(out / "sentences.tsv", _tsv(["class", "word", "sentence", target, "audio"],
                                                  [(s.word_class, s.word, s.text, s.valence, s.audio)
                                                   for s in sentences]))
    atomic_write_text(out / "results.md", _markdown(result))
    atomic_write_bytes(out / "linguistics.png", _png(sentences, dists, f"{Path(str(model)).name}: {target}"))
    atomic_write_text(previous, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result
