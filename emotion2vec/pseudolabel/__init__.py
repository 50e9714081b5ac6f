"""The data engine: pseudo-labels for unlabelled speech from one or more emotion recognisers, filtered into a
training set, as the emotion2vec+ models were trained (``emotion2vec pseudo-label``; ``recipes/data_engine.sh`` runs
label -> filter -> fine-tune -> re-label rounds).

One module per job, in the order of a run (:func:`.run.run_pseudo_label`):

    predictions.py  every model over every input: one prediction per utterance, one per window of a long recording;
                    sharded over the processes of a torchrun job, resumable in chunks of files
    combine.py      per file: the mean probability over models and windows, its label, confidence, margin and the
                    agreement of the models' and windows' own labels
    filter.py       which files are kept: confidence, margin, agreement, duration, classes, a per-class quota; the
                    reason for every rejected file
    corpus.py       data.tsv with ``label`` and soft ``votes``; with a labelled set to train with and a dev set to
                    score on, a one-fold corpus (``split`` column, folds.json) that ``emotion2vec finetune`` reads
    report.py       report.md / report.json, the confidence histogram and the agreement matrix between models
    run.py          the run, and the settings a resumed run must match
"""

from ..errors import Emotion2VecError

__all__ = ["PseudoLabelError"]


class PseudoLabelError(Emotion2VecError, ValueError):
    """A pseudo-labelling input or option that cannot be used; the message names it."""
