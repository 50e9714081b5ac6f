"""Pretraining: the emotion2vec distillation objective (torch-only), its data and masks, initialisation from
pretrained checkpoints, the manifest builder, and the thin fairseq plugin (``_fairseq/``) that launches it with
``fairseq-hydra-train``."""


def fairseq_user_dir() -> str:
    """Path to pass as ``common.user_dir`` to ``fairseq-hydra-train``."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "_fairseq" / "emotion2vec_fairseq")
