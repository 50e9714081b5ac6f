"""fairseq plugin (``common.user_dir``): registers the task ``emotion2vec_pretraining`` and the model ``emotion2vec``.

A thin adapter: the algorithm lives in :mod:`emotion2vec.pretrain.distill` and :mod:`emotion2vec.pretrain.data`
(torch-only). Import it only through fairseq's user-dir mechanism (its registrations are global).
"""

from . import model, task  # noqa: F401
