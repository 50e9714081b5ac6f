"""Holds the fairseq user dir (``emotion2vec_fairseq``) alone, so fairseq's ``common.user_dir`` mechanism, which puts
this folder on ``sys.path``, exposes no other module names. Get the path with ``emotion2vec.fairseq_user_dir()``."""
