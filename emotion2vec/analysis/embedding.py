"""``probe --embedding [FOLD]`` / ``finetune --embedding [FOLD]``: a 2-D map of a trained model's hidden layer on its
fold's test set.

Two panels over the fold's test utterances: the input features (mean over frames, as the demo's feature t-SNE; for
a fine-tuned model, the fine-tuned upstream's frames of the layer its head reads) and the head's pooled hidden layer
(the vector its output layer reads, :func:`.inference.hidden` / :meth:`.inference.ModelPredictor.vectors`), both
standardised and reduced to 2-D with UMAP when ``umap-learn`` is installed, else t-SNE (scikit-learn; PCA
initialisation, perplexity min(30, (n - 1) / 3)). Colours (``colour``): ``label`` (the true label; regression: the
arousal target, else the first), ``arousal`` / ``valence`` (the label's arousal group, :data:`AROUSAL_GROUPS`, the
emotion2vec paper's Figure 3, or valence group, :data:`VALENCE_GROUPS`; regression: that target's value), ``speaker``
and ``gender`` (data.tsv's columns), ``corpus`` (a cross-corpus probe: the fold's valid utterances of the training
corpus beside the test corpus). Written as ``embedding.png``; results.json records the fold, the method and the
colouring under ``embedding``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import AnalysisError

__all__ = ["AROUSAL_GROUPS", "VALENCE_GROUPS", "EMBEDDING_COLOURS", "reduce_2d", "embedding_figure", "write_embedding",
           "model_vectors", "pick_fold"]

#: label -> arousal group for ``colour="arousal"`` (the paper's Figure 3: low = sad / neutral, high = angry / happy;
#: IEMOCAP's excited, merged into happy by the 4-class setup, is high)
AROUSAL_GROUPS = {"angry": "high arousal", "happy": "high arousal", "excited": "high arousal",
                  "sad": "low arousal", "neutral": "low arousal"}
#: label -> valence group for ``colour="valence"`` (the valence of the basic emotions: happy / excited / surprised
#: positive, angry / sad / fearful / disgusted / frustrated negative, neutral / calm neutral)
VALENCE_GROUPS = {"happy": "positive", "excited": "positive", "surprised": "positive", "surprise": "positive",
                  "angry": "negative", "sad": "negative", "fearful": "negative", "fear": "negative",
                  "disgusted": "negative", "disgust": "negative", "frustrated": "negative", "neutral": "neutral",
                  "calm": "neutral"}
EMBEDDING_COLOURS = ("label", "arousal", "valence", "speaker", "gender", "corpus")


def reduce_2d(x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, D) -> ((n, 2), method name): UMAP when installed, else t-SNE, on standardised columns."""
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.asarray(x, dtype=np.float64))
    try:
        import umap  # optional: pip install umap-learn
    except ImportError:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits  # installed with scikit-learn

        perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))
        # one OpenMP thread: scikit-learn's pool contends with torch's and is 10x slower on a loaded CPU for maps of
        # a few hundred points, where one thread takes seconds
        with threadpool_limits(1):
            return TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x), "t-SNE"
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x), "UMAP"


def _pick(folds: list[str], spec: str) -> str:
    if spec in folds:
        return spec
    if spec.isdigit() and 1 <= int(spec) <= len(folds):
        return folds[int(spec) - 1]
    raise AnalysisError(f"--embedding {spec!r}: no such fold (folds: {', '.join(folds)})")


def _pooled_inputs(feats, idx: np.ndarray) -> np.ndarray:
    """(n, D): utterances ``idx`` of ``feats`` averaged over their frames (and over layers when several are kept)."""
    import torch

    positions = torch.as_tensor(idx, dtype=torch.long, device=feats.x.device)
    if not feats.frame:
        x = feats.x[positions]
    else:
        rows, segments, lengths = feats.frame_index(positions)
        x = feats.x.new_zeros((len(idx), *feats.x.shape[1:])).index_add_(0, segments, feats.x[rows])
        x = x / lengths.clamp(min=1).reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    x = x.float().cpu().numpy()
    return x.mean(axis=1) if x.ndim == 3 else x


def _colours(colour: str, sub, rows_by_key: Mapping[str, Mapping] | None, corpus_of: Sequence[str] | None
             ) -> tuple[str, list[str] | np.ndarray, list[str] | None]:
    """What colours each point: -> (shown as, a category per point or a value per point, the categories in legend
    order or None for values)."""
    rows = rows_by_key or {}
    if colour == "corpus":
        if corpus_of is None or len(set(corpus_of)) < 2:
            raise AnalysisError("--embedding-colour corpus needs utterances of two corpora: a cross-corpus run (its "
                                "map shows the fold's valid utterances of the training corpus beside the test corpus)")
        return "corpus", list(corpus_of), list(dict.fromkeys(corpus_of))
    if colour in ("speaker", "gender"):
        values = [str(rows.get(k, {}).get(colour, "") or "unknown") for k in sub.keys]
        if set(values) == {"unknown"}:
            raise AnalysisError(f"--embedding-colour {colour}: data.tsv has no {colour} column for these utterances")
        return colour, values, sorted(set(values))
    if sub.task == "regression":
        target = colour if colour in sub.names else ("arousal" if "arousal" in sub.names else sub.names[0])
        if colour in ("arousal", "valence") and colour not in sub.names:
            raise AnalysisError(f"--embedding-colour {colour}: the run predicts {', '.join(sub.names)}")
        return target, sub.target[:, sub.names.index(target)], None
    labels = sub.labels() if sub.hard is not None else [sub.names[int(i)] for i in np.asarray(sub.target).argmax(1)]
    if colour == "label":
        return "label", labels, list(sub.names)
    groups = AROUSAL_GROUPS if colour == "arousal" else VALENCE_GROUPS
    if not any(label in groups for label in sub.names):
        raise AnalysisError(f"--embedding-colour {colour}: none of the labels {sub.names} has a {colour} group "
                            f"({', '.join(sorted(groups))})")
    return f"{colour} group", [groups.get(label, "other") for label in labels], \
        list(dict.fromkeys(groups.values())) + ["other"]


def embedding_figure(out: str | os.PathLike, result: dict[str, Any], fold: str, inputs: np.ndarray,
                     hidden_vectors: np.ndarray, sub, colour: str = "label",
                     rows_by_key: Mapping[str, Mapping] | None = None, corpus_of: Sequence[str] | None = None,
                     seed: int = 0, panels: tuple[str, str] = ("input features (mean over frames)",
                                                               "head hidden layer (pooled)")) -> None:
    """Write ``embedding.png`` (two 2-D maps of the same utterances: ``inputs`` (n, D) and ``hidden_vectors``
    (n, H)) coloured by ``colour`` (:data:`EMBEDDING_COLOURS`), and record it in ``result`` under ``embedding``.
    ``sub``: the utterances' :class:`~.runs.Predictions` (true targets); ``rows_by_key``: their data.tsv rows
    (speaker, gender); ``corpus_of``: each point's corpus (``colour="corpus"``)."""
    from ..downstream.report import _figure, _png, corpus_name
    from ..io.atomic import atomic_write_bytes

    if colour not in EMBEDDING_COLOURS:
        raise AnalysisError(f"--embedding-colour {colour!r}: choose {', '.join(EMBEDDING_COLOURS)}")
    colour_by, values, groups = _colours(colour, sub, rows_by_key, corpus_of)
    maps = [reduce_2d(inputs, seed), reduce_2d(hidden_vectors, seed)]
    fig = _figure((10.0, 4.4))
    for k, ((emb, method), panel) in enumerate(zip(maps, panels)):
        ax = fig.add_subplot(1, 2, k + 1)
        if groups is None:
            points = ax.scatter(emb[:, 0], emb[:, 1], c=values, cmap="viridis", s=12)
            if k == 1:
                fig.colorbar(points, ax=ax, label=colour_by)
        else:
            many = len(groups) > 12  # e.g. speakers: no legend
            for g in groups:
                sel = np.asarray([v == g for v in values])
                if sel.any():
                    ax.scatter(emb[sel, 0], emb[sel, 1], s=12, label=g, **({"color": "0.75"} if g == "other" else {}))
            if k == 0 and not many:
                ax.legend(markerscale=1.5, fontsize=8)
        ax.set_title(f"{method}: {panel}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{corpus_name(result['corpus'])} / {result['source']}: {fold} ({len(values)} utterances), "
                 f"coloured by {colour_by}", fontsize=10)
    atomic_write_bytes(Path(out) / "embedding.png", _png(fig))
    result["embedding"] = {"fold": fold, "method": maps[0][1], "utterances": int(len(values)), "coloured_by": colour_by}


def pick_fold(folds: list[str], spec: str) -> str:
    """A fold by name or 1-based number (``--embedding FOLD``)."""
    return _pick(folds, str(spec))


def write_embedding(out: str | os.PathLike, result: dict[str, Any], preds, heads: Mapping[str, Any], fold: str,
                    feats, positions: Sequence[int], seed: int = 0, colour: str = "label",
                    rows_by_key: Mapping[str, Mapping] | None = None, valid=None,
                    valid_positions: Sequence[int] = ()) -> None:
    """A probe's ``embedding.png`` of ``fold`` (a name or 1-based number): its head's hidden layer beside its input
    features. ``preds``: the run's test :class:`~.runs.Predictions`; ``heads``: fold name -> trained head; ``feats``:
    the packed features the heads were trained on, ``positions``: the row of each of ``preds``' utterances in them.
    ``colour="corpus"`` (cross-corpus runs) adds the fold's valid utterances (``valid``, at ``valid_positions``)."""
    from .inference import hidden

    name = _pick(preds.fold_names(), str(fold))
    idx = preds.in_fold(name)
    if len(idx) < 5:
        raise AnalysisError(f"--embedding {fold}: fold {name} has {len(idx)} test utterance(s); a 2-D map needs 5")
    sub = preds.select(idx)
    rows = np.asarray(positions, dtype=np.int64)[idx]
    corpus_of = None
    if colour == "corpus" and valid is not None:
        cross = result.get("cross_corpus") or {}
        vidx = valid.in_fold(name)
        sub = _joined(valid.select(vidx), sub)
        rows = np.concatenate([np.asarray(valid_positions, dtype=np.int64)[vidx], rows])
        corpus_of = ([f"{cross.get('train_corpus', '')} (training corpus)"] * len(vidx)
                     + [f"{cross.get('test_corpus', '')} (test corpus)"] * len(idx))
    embedding_figure(out, result, name, _pooled_inputs(feats, rows), hidden(heads[name], feats, rows), sub, colour,
                     rows_by_key, corpus_of, seed)


def _joined(a, b):
    """Two :class:`~.runs.Predictions` of one task, one after the other."""
    from .runs import Predictions

    hard = None if a.hard is None or b.hard is None else np.concatenate([a.hard, b.hard])
    return Predictions(a.task, a.names, a.folds + b.folds, a.keys + b.keys, np.concatenate([a.predicted, b.predicted]),
                       np.concatenate([a.target, b.target]), hard)


def model_vectors(model_dir: str | os.PathLike, keys: Sequence[str], rows: Mapping[str, Mapping], device: str = "cpu",
                  num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (n, D): the mean over frames of the layer the head reads, hidden (n, H): the vector the head's output
    layer reads) of a model with its own head (a fine-tuned export) on the utterances ``keys``."""
    from .inference import ModelPredictor, decoded_chunks

    model = ModelPredictor(model_dir, device)
    inputs, hidden_vectors = [], []
    for _, wavs in decoded_chunks(list(keys), rows, num_workers):
        x, h = model.vectors(wavs)
        inputs.append(x)
        hidden_vectors.append(h)
    return np.concatenate(inputs), np.concatenate(hidden_vectors)
