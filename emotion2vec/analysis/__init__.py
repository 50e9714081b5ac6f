"""Analyses of finished downstream runs: what a probe (or fine-tuning run) saved, recomputed and compared.

One module per job:
    runs.py           a finished run's files read back (results.json, predictions.tsv, valid_predictions.tsv,
                      heads/<fold>.pt) as :class:`~.runs.Predictions`
    inference.py      trained models on audio or features in memory: saved heads, recomputed features, models
                      with their own head (fine-tuned exports, emotion2vec+, hf: emotion heads)
    evaluate.py       ``emotion2vec evaluate``: any trained predictor scored on any labelled corpus
    perturbations.py  the eight signal perturbations of Wagner et al. (numpy / scipy.signal, seeded)
    robustness.py     ``emotion2vec robustness``: perturbed test audio through the same upstream and head, or the
                      fine-tuned models
    fairness.py       per-group (``gender`` by default) and per-speaker scores with bootstrap intervals
    ensemble.py       ``emotion2vec ensemble``: hard / soft votes over runs, combinations ranked on dev
    efficiency.py     ``probe --train-fraction`` / ``--seeds``: stratified subsets, repeated seeds, the curve
    embedding.py      2-D map (t-SNE, or UMAP when installed) of a head's hidden layer beside its input features,
                      coloured by label, arousal or valence group, speaker, gender or corpus
    plots.py          the analysis figures of a probe run (per-speaker scores)
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import Emotion2VecError

__all__ = ["AnalysisError", "analysis_files"]


class AnalysisError(Emotion2VecError, ValueError):
    """A run, option or parameter an analysis cannot use; the message names the file, run or value."""


def analysis_files(result: Mapping[str, Any]) -> list[str]:
    """The analysis figures a run directory holds for ``result``: ``speakers.png`` (at least one speaker scored,
    :mod:`.plots`), ``embedding.png`` (:mod:`.embedding`)."""
    files = ["speakers.png"] if (result.get("speakers") or {}).get("speakers") else []
    if result.get("embedding"):
        files.append("embedding.png")
    return files
