"""``probe --embedding [FOLD]``: a 2-D map of a trained head's hidden layer on its fold's test set.

Two panels over the fold's test utterances: the input features (mean over frames, as the demo's feature t-SNE) and
the head's pooled hidden layer (the vector its output layer reads, :func:`.inference.hidden`), both standardised
and reduced to 2-D with UMAP when ``umap-learn`` is installed, else t-SNE (scikit-learn; PCA initialisation,
perplexity min(30, (n - 1) / 3)). Points are coloured by the true label (class tasks) or by the arousal target
(regression; the first target when none is called arousal). With ``colour="arousal"`` a class task is coloured by
the label's arousal group instead (:data:`AROUSAL_GROUPS`: high = angry, happy, excited; low = sad, neutral; any
other label grey), the emotion2vec paper's Figure 3. Written as ``embedding.png``; results.json records the fold,
the method and the colouring under ``embedding``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import AnalysisError

__all__ = ["AROUSAL_GROUPS", "EMBEDDING_COLOURS", "reduce_2d", "write_embedding"]

#: label -> arousal group for ``colour="arousal"`` (the paper's Figure 3: low = sad / neutral, high = angry / happy;
#: IEMOCAP's excited, merged into happy by the 4-class setup, is high)
AROUSAL_GROUPS = {"angry": "high arousal", "happy": "high arousal", "excited": "high arousal",
                  "sad": "low arousal", "neutral": "low arousal"}
EMBEDDING_COLOURS = ("label", "arousal")


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


def write_embedding(out: str | os.PathLike, result: dict[str, Any], preds, heads: Mapping[str, Any], fold: str,
                    feats, positions: Sequence[int], seed: int = 0, colour: str = "label") -> None:
    """Write ``embedding.png`` of ``fold`` (a name or 1-based number) into ``out`` and record it in ``result``.
    ``preds``: the run's test :class:`~.runs.Predictions`; ``heads``: fold name -> trained head; ``feats``: the
    packed features the heads were trained on, ``positions``: the row of each of ``preds``' utterances in them.
    ``colour``: ``label`` or ``arousal`` (class tasks: the label's arousal group, :data:`AROUSAL_GROUPS`)."""
    from ..downstream.report import _figure, _png, corpus_name
    from ..io.atomic import atomic_write_bytes
    from .inference import hidden

    if colour not in EMBEDDING_COLOURS:
        raise AnalysisError(f"--embedding-colour {colour!r}: choose {', '.join(EMBEDDING_COLOURS)}")
    name = _pick(preds.fold_names(), str(fold))
    idx = preds.in_fold(name)
    if len(idx) < 5:
        raise AnalysisError(f"--embedding {fold}: fold {name} has {len(idx)} test utterance(s); a 2-D map needs 5")
    sub = preds.select(idx)
    rows = np.asarray(positions, dtype=np.int64)[idx]
    maps = [reduce_2d(_pooled_inputs(feats, rows), seed), reduce_2d(hidden(heads[name], feats, rows), seed)]
    if sub.task == "regression":
        target = "arousal" if "arousal" in sub.names else sub.names[0]
        colour_by, values = target, sub.target[:, sub.names.index(target)]
    else:
        colour_by = "label"
        labels = sub.labels() if sub.hard is not None else [sub.names[int(i)] for i in sub.target.argmax(1)]
        groups = list(sub.names)
        if colour == "arousal":
            if not any(label in AROUSAL_GROUPS for label in sub.names):
                raise AnalysisError(f"--embedding-colour arousal: none of the labels {sub.names} has an arousal "
                                    f"group ({', '.join(sorted(AROUSAL_GROUPS))})")
            colour_by = "arousal group"
            labels = [AROUSAL_GROUPS.get(label, "other") for label in labels]
            groups = ["high arousal", "low arousal", "other"]
    fig = _figure((10.0, 4.4))
    for k, ((emb, method), panel) in enumerate(zip(maps, ("input features (mean over frames)",
                                                           "head hidden layer (pooled)"))):
        ax = fig.add_subplot(1, 2, k + 1)
        if sub.task == "regression":
            points = ax.scatter(emb[:, 0], emb[:, 1], c=values, cmap="viridis", s=12)
            if k == 1:
                fig.colorbar(points, ax=ax, label=colour_by)
        else:
            for label in groups:
                sel = np.asarray([v == label for v in labels])
                if sel.any():
                    ax.scatter(emb[sel, 0], emb[sel, 1], s=12, label=label,
                               **({"color": "0.75"} if label == "other" and colour == "arousal" else {}))
            if k == 0:
                ax.legend(markerscale=1.5, fontsize=8)
        ax.set_title(f"{method}: {panel}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{corpus_name(result['corpus'])} / {result['source']}: {name} test set ({len(idx)} utterances), "
                 f"coloured by {colour_by}", fontsize=10)
    atomic_write_bytes(Path(out) / "embedding.png", _png(fig))
    result["embedding"] = {"fold": name, "method": maps[0][1], "utterances": int(len(idx)), "coloured_by": colour_by}
