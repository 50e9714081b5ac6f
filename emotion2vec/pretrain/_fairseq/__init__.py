"""Holds the fairseq user dir (``emotion2vec_fairseq``) alone, so fairseq's ``common.user_dir`` mechanism, which puts
this folder on ``sys.path``, exposes no other module names. Get the path with ``emotion2vec.fairseq_user_dir()``.

:func:`register_schema` is the one other use of fairseq: ``emotion2vec pretrain`` composes a configuration against
fairseq's schema exactly as ``fairseq-hydra-train`` does."""

from __future__ import annotations


def register_schema(config_name: str) -> bool:
    """Store fairseq's config schema under ``config_name`` in Hydra's ConfigStore, as ``fairseq-hydra-train`` does
    before composing, so every fairseq field (``common.cpu``, ``common.bf16``, ...) can be overridden; False when
    fairseq is not installed (then only the fields the YAML files list exist)."""
    try:
        from fairseq.dataclass.initialize import hydra_init
    except ImportError:
        return False
    hydra_init(config_name)
    return True
