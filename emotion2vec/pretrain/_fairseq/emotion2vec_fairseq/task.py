"""fairseq task ``emotion2vec_pretraining``: manifests -> :class:`~emotion2vec.pretrain.data.PretrainingDataset`,
dynamic batching by ``dataset.max_tokens`` (fairseq's ``batch_by_size``), and the EMA step after each update."""

from __future__ import annotations

import logging
import os
import hashlib
from dataclasses import dataclass, field
from typing import Optional

import torch

from fairseq.data import FairseqDataset
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from emotion2vec.pretrain.data import MaskSettings, PretrainingDataset
from emotion2vec.pretrain.launch import PretrainConfigError, config_problems

logger = logging.getLogger(__name__)


class FairseqPretrainingDataset(PretrainingDataset, FairseqDataset):
    """The core dataset with fairseq's batching helpers (``batch_by_size``, ``filter_indices_by_size``)."""

    def configure(self, masks: MaskSettings, num_frames) -> None:
        self.masks, self.num_frames = masks, num_frames


@dataclass
class Emotion2VecPretrainingConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "directory with {split}.tsv manifests (emotion2vec manifest)"})
    normalize: bool = field(default=True, metadata={"help": "zero-mean unit-variance waveform per utterance"})
    sample_rate: int = field(default=16000, metadata={"help": "audio must be at this rate"})
    min_sample_size: int = field(default=8000, metadata={"help": "drop files shorter than this (samples)"})
    max_sample_size: int = field(default=320000, metadata={"help": "crop longer batches to this (samples)"})
    precompute_mask: bool = field(default=True, metadata={
        "help": "dataset-level block masks with exactly mask_prob masked frames (the official runs); "
                "false = model-side span masks"})
    param_checksum_dir: Optional[str] = field(default=None, metadata={
        "help": "debugging: after every update append a SHA-256 of the student and teacher weights to "
                "DIR/param_checksums.rank<R>.tsv (compare ranks to prove data-parallel replicas stay identical)"})
    seed: int = II("common.seed")


@register_task("emotion2vec_pretraining", dataclass=Emotion2VecPretrainingConfig)
class Emotion2VecPretrainingTask(FairseqTask):
    def __init__(self, cfg: Emotion2VecPretrainingConfig):
        super().__init__(cfg)
        self._model_settings = None  # (MaskSettings, num_frames) once the model exists

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        root = cfg._get_root() if hasattr(cfg, "_get_root") else {"task": cfg}  # the whole run's config
        problems = config_problems(root)
        if problems:
            raise PretrainConfigError("the configuration cannot run: " + "; ".join(problems))
        return cls(cfg)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs):
        path = os.path.join(self.cfg.data, f"{split}.tsv")
        masks, num_frames = self._model_settings or (None, None)
        ds = FairseqPretrainingDataset(path, num_frames=num_frames, min_sample_size=self.cfg.min_sample_size,
                                       max_sample_size=self.cfg.max_sample_size, normalize=self.cfg.normalize,
                                       masks=masks, precompute_mask=self.cfg.precompute_mask, seed=self.cfg.seed)
        ds.set_epoch(epoch)
        logger.info(f"{path}: {len(ds)} files ({ds.skipped} shorter than min_sample_size skipped)")
        self.datasets[split] = ds

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        d = model.distill
        self._model_settings = (MaskSettings(d.clone_batch, d.mask_prob, d.mask_prob_adjust, d.mask_length),
                                model.cfg.num_frames)
        for ds in self.datasets.values():
            ds.configure(*self._model_settings)
        return model

    def optimizer_step(self, optimizer, model, update_num: int):
        super().optimizer_step(optimizer, model, update_num)
        while not hasattr(model, "ema_step") and hasattr(model, "module"):
            model = model.module  # unwrap DDP / fairseq wrappers
        model.ema_step(update_num + 1)  # EMA after optimizer step number update_num + 1 (1-based)
        if self.cfg.param_checksum_dir:
            self._write_checksum(model, update_num + 1)

    def _write_checksum(self, model, update: int) -> None:
        state = model.state_dict()
        teacher = state.pop("_ema", {})
        h = hashlib.sha256()
        for tensors in (state, teacher):
            for name in sorted(tensors):
                h.update(tensors[name].detach().float().cpu().numpy().tobytes())
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        os.makedirs(self.cfg.param_checksum_dir, exist_ok=True)
        with open(os.path.join(self.cfg.param_checksum_dir, f"param_checksums.rank{rank}.tsv"), "a") as f:
            f.write(f"{update}\t{h.hexdigest()}\n")

    def max_positions(self):
        return None

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None
