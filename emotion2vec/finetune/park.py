"""Park et al.'s speaker-specific emotion networks: attention blocks with max-pooling, the fusion of their Eq. (5),
ArcFace heads.

Both of their networks read the frames of a wav2vec 2.0 encoder (its CNN frozen) and differ in the head:

speaker-identification network (their Fig. 1)
    frames (B, T, D) -> FC (D -> d) -> one attention block -> max over time -> H_id (B, d)
    -> ArcFace over the speakers (s = 30, m = 0.3: the cosine between l2-normalised H_id and one centre per
       speaker), or the cross-entropy variant (a linear layer and softmax)
emotion network (their Fig. 2)
    frames -> ReLU -> FC (D -> d) -> k attention blocks in a row (k = 1..4); block i's output max-pooled over time
    is h_i (B, d) -> E = sum_i W_fusion,i (elementwise) h_i            (their Eq. 5; W_fusion (k, d), learnt)
    -> ArcFace over the emotions (E l2-normalised), or the cross-entropy variant (a linear layer on E)
speaker-aware model (their Fig. 3)
    the speaker network's H_id joins the emotion network's k vectors: Eq. (5) over k + 1 vectors with W_fusion
    extended to (k + 1, d) (:meth:`ParkHead.extend_fusion`: the trained k rows kept, the new one starting at 1).

An attention block: the paper gives 4 heads and dropout 0.1; its layout here is the Transformer encoder layer
(self-attention and a position-wise feed-forward layer of width ``ffn``, each with a residual connection and a
LayerNorm), padded frames masked out of the attention. Max-pooling ignores padded frames. ``W_fusion`` starts at 1
(E is then the plain sum of the h_i).

:class:`ParkHead` is this head on frames; the fine-tuning run puts it on an upstream (``finetune --head park``).
``tensor`` fusion elsewhere in :mod:`.heads` is Zadeh et al.'s outer product, a different operation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..downstream.heads import CosineClassifier
from . import FinetuneError

__all__ = ["ParkHeadConfig", "AttentionBlock", "ParkHead", "masked_max", "fuse_eq5", "PARK_KIND",
           "park_spec_config", "park_from_spec", "build_park_head"]

#: the classifier kind of an exported Park head (config.json's classifier entry)
PARK_KIND = "park"


@dataclass
class ParkHeadConfig:
    """``network`` ``emotion`` (ReLU, FC, ``blocks`` attention blocks, Eq. (5)) or ``speaker`` (FC, one block)."""

    input_dim: int
    num_outputs: int
    network: str = "emotion"
    dim: int = 768  # d: the FC's output, the attention blocks' width
    blocks: int = 4  # k
    heads: int = 4
    ffn: int = 768
    dropout: float = 0.1
    output: str = "arcface"  # arcface | linear (the cross-entropy variant)
    arcface_scale: float = 30.0
    extra_vectors: int = 0  # vectors from outside joining Eq. (5): 1 with the speaker network

    def __post_init__(self) -> None:
        if self.network not in ("emotion", "speaker"):
            raise FinetuneError(f"Park network {self.network!r}: emotion or speaker")
        if self.network == "speaker" and (self.blocks != 1 or self.extra_vectors):
            raise FinetuneError("Park's speaker-identification network has one attention block and no fusion")
        if not 1 <= self.blocks <= 16:
            raise FinetuneError(f"--park-blocks {self.blocks}: 1..16 (the paper: 1 to 4)")
        if self.dim % self.heads:
            raise FinetuneError(f"--park-dim {self.dim} is not divisible by {self.heads} attention heads")
        if self.output not in ("arcface", "linear"):
            raise FinetuneError(f"Park head output {self.output!r}: arcface or linear")
        if not 0.0 <= self.dropout < 1.0:
            raise FinetuneError(f"Park head dropout {self.dropout}: must lie in [0, 1)")

    def to_dict(self) -> dict:
        return asdict(self)


def masked_max(x: Tensor, lengths: Tensor) -> Tensor:
    """(B, T, d) frames, (B,) valid frames -> (B, d) the maximum over each input's valid frames."""
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
    return x.masked_fill(~valid[..., None], float("-inf")).amax(dim=1)


def fuse_eq5(weight: Tensor, vectors: Tensor) -> Tensor:
    """Eq. (5): ``weight`` (k, d), ``vectors`` (B, k, d) -> E (B, d) = sum_i weight_i (elementwise) vectors_i."""
    return (weight[None] * vectors).sum(dim=1)


class AttentionBlock(nn.Module):
    """(B, T, d) frames, (B,) valid frames -> (B, T, d): a Transformer encoder layer (see the module docstring)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation="relu", batch_first=True)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        pad = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths[:, None]
        return self.layer(x, src_key_padding_mask=pad if bool(pad.any()) else None)


class ParkHead(nn.Module):
    """frames (B, T, D), valid frames (B,) [, extra vectors (B, e, d)] -> outputs (B, C).

    ``embed`` gives the vector the output layer reads: E of Eq. (5) (emotion network) or H_id (speaker network);
    an ArcFace output l2-normalises it (``s cos``), a linear one reads it as it is.
    """

    def __init__(self, config: ParkHeadConfig, speaker: nn.Module | None = None):
        super().__init__()
        self.config = c = config
        self.fc = nn.Linear(c.input_dim, c.dim)
        self.blocks = nn.ModuleList(AttentionBlock(c.dim, c.heads, c.ffn, c.dropout) for _ in range(c.blocks))
        if c.network == "emotion":
            self.fusion = nn.Parameter(torch.ones(c.blocks + c.extra_vectors, c.dim))
        self.output = (CosineClassifier(c.dim, c.num_outputs, c.arcface_scale) if c.output == "arcface"
                       else nn.Linear(c.dim, c.num_outputs))
        self.speaker = speaker  # the speaker-aware model: the speaker network (SpeakerEncoder) whose H_id joins Eq. 5
        self.fusion_kind = "park" if speaker is not None else None

    @property
    def pooled_dim(self) -> int:
        return self.config.dim

    def pooled_vectors(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """(B, k, d): each attention block's output, max-pooled over the valid frames."""
        x = self.fc(F.relu(frames) if self.config.network == "emotion" else frames)
        out = []
        for block in self.blocks:
            x = block(x, lengths)
            out.append(masked_max(x, lengths))
        return torch.stack(out, dim=1)

    def embed(self, frames: Tensor, lengths: Tensor, extra: Tensor | None = None) -> Tensor:
        h = self.pooled_vectors(frames, lengths)
        if self.config.network == "speaker":
            return h[:, 0]
        if self.config.extra_vectors:
            if extra is None or extra.shape[1:] != (self.config.extra_vectors, self.config.dim):
                raise FinetuneError(f"this Park head fuses {self.config.extra_vectors} extra ({self.config.dim}-dim) "
                                    f"vector(s) per input (the speaker network's)")
            h = torch.cat([h, extra.to(h.dtype)], dim=1)
        return fuse_eq5(self.fusion, h)

    def forward(self, frames: Tensor, lengths: Tensor, extra: Tensor | None = None) -> Tensor:
        """``extra``: (B, e, d) vectors joining Eq. (5), or (B, d) for one (the speaker network's H_id)."""
        if extra is not None and extra.dim() == 2:
            extra = extra[:, None]
        return self.output(self.embed(frames, lengths, extra))

    def extend_fusion(self, extra: int = 1) -> "ParkHead":
        """The integration step: ``extra`` more vectors join Eq. (5); the trained rows of W_fusion are kept, the new
        ones start at 1. Returns self."""
        if self.config.network != "emotion":
            raise FinetuneError("only the emotion network fuses vectors")
        old = self.fusion.detach()
        self.config = ParkHeadConfig(**{**asdict(self.config), "extra_vectors": self.config.extra_vectors + extra})
        self.fusion = nn.Parameter(torch.cat([old, old.new_ones(extra, old.shape[1])]))
        return self


# ------------------------------------------------------------------------------------------------ stored form
def park_spec_config(head: ParkHead) -> dict:
    """What :func:`park_from_spec` needs besides the state: the head's config and, for the speaker-aware model, the
    speaker network's (upstream config, layer, Park speaker head config; its tensors are under ``speaker.``)."""
    from .heads import speaker_spec_config

    config = {"park": head.config.to_dict()}
    if head.speaker is not None:
        config.update(fusion="park", speaker_dim=head.speaker.dim, speaker=speaker_spec_config(head.speaker))
    return config


def park_from_spec(state, config, where: str) -> ParkHead:
    """An exported Park head (classifier kind ``park``), weights loaded strictly; a speaker-aware one rebuilds its
    speaker network from the same state."""
    from ..models.checkpoint import load_state_strict
    from .heads import SpeakerEncoder, _build_upstream

    try:
        park = ParkHeadConfig(**config["park"])
    except (KeyError, TypeError) as e:
        raise FinetuneError(f"{where}: the Park head's config is incomplete ({e})") from None
    speaker = None
    if config.get("fusion") == "park":
        sp = config.get("speaker") or {}
        prefix = "speaker.upstream."
        upstream = _build_upstream(sp.get("model") or {}, {k[len(prefix):]: v for k, v in state.items()
                                                           if k.startswith(prefix)}, where)
        speaker = SpeakerEncoder(upstream, ParkHead(ParkHeadConfig(**sp["head"])), sp["layer"], normalize=False)
    head = ParkHead(park, speaker)
    load_state_strict(head, dict(state), where)
    return head.eval()


def build_park_head(config, names, dim: int, speaker: nn.Module | None = None, kept=None,
                    where: str = "") -> ParkHead:
    """The Park head a fine-tuning fold starts from (``config``: a :class:`~.config.FinetuneConfig` with
    ``park_blocks`` > 0).

    ``kept`` (``--init-head keep``: the start export's ``park`` classifier) is the integration step: the trained
    emotion network's head, its classes those of the task, with W_fusion extended by the speaker network's vector
    (``--fusion park``). Otherwise a new head: their speaker network for ``--task speaker``, else their emotion
    network with ``park_blocks`` blocks (and room in Eq. 5 for the speaker vector when one is fused)."""
    if kept is not None:
        if kept.kind != PARK_KIND or kept.config.get("fusion"):
            raise FinetuneError(f"--init-head keep with --park-blocks: {where} must be an emotion network exported by "
                                f"`finetune --park-blocks K` (its head is {kept.kind}"
                                + (", already speaker-aware" if kept.config.get("fusion") else "") + ")")
        if list(kept.labels) != list(names):
            raise FinetuneError(f"--init-head keep: the Park head of {where} has the classes {list(kept.labels)}, "
                                f"this task {list(names)}")
        head = park_from_spec(kept.state, kept.config, where)
        if head.config.blocks != config.park_blocks:
            raise FinetuneError(f"--park-blocks {config.park_blocks}: the kept head of {where} has "
                                f"{head.config.blocks} attention blocks")
        head.train()
    else:
        d = config.park_dim or dim
        network = "speaker" if config.task == "speaker" else "emotion"
        head = ParkHead(ParkHeadConfig(dim, len(names), network, d, config.park_blocks, ffn=config.park_ffn or d,
                                       output=config.head, arcface_scale=config.arcface_scale))
    if speaker is not None:
        if speaker.dim != head.config.dim:
            raise FinetuneError(f"--fusion park: the speaker network gives {speaker.dim}-dim vectors, the emotion "
                                f"network's blocks are {head.config.dim} wide (--park-dim)")
        if not isinstance(getattr(speaker, "head", None), ParkHead):
            raise FinetuneError("--fusion park needs Park et al.'s speaker network as --speaker-model (a `finetune "
                                "--task speaker --park-blocks 1` export)")
        head.extend_fusion()
        head.speaker, head.fusion_kind = speaker, "park"
    return head


# ------------------------------------------------------------------------------------------------ joint training
class TrainableSpeaker(nn.Module):
    """Park et al.'s speaker network trained with the emotion network (their Fig. 7b-c): waveforms (B, N), valid
    samples (B,) -> H_id (B, d) with gradients.

    ``mode`` ``head``: the speaker model's upstream stays frozen (their "Arcface Fine-tuned": the attention-pooling
    and the speaker classification layers train); ``all``: its upstream trains too, except its convolutional front
    end ("All Fine-tuned"). ``id_output`` is a new ArcFace layer over the fold's training speakers (the paper reduces
    VoxCeleb1's 1,251 centres to IEMOCAP's training speakers); in training each forward leaves its outputs in
    ``id_logits`` for the identification loss (:class:`JointLoss`). Exported models keep the speaker network, not
    ``id_output``."""

    def __init__(self, encoder: nn.Module, mode: str, num_speakers: int, scale: float = 30.0, plan_freeze=None):
        """``plan_freeze``: :func:`~.model.plan_freeze` (which parameters form the upstream's convolutional front
        end), needed for ``all``."""
        super().__init__()
        if mode not in ("head", "all"):
            raise FinetuneError(f"--speaker-train {mode!r}: frozen, head or all")
        import copy

        self.upstream = copy.deepcopy(encoder.upstream)
        self.head = copy.deepcopy(encoder.head)
        self.layer, self.mode, self.normalize = encoder.layer, mode, False
        self.id_output = CosineClassifier(self.head.config.dim, num_speakers, scale)
        frozen = {n for n, _ in self.upstream.named_parameters()}
        if mode == "all":
            if plan_freeze is None:
                raise FinetuneError("--speaker-train all needs the freeze plan of the speaker model's upstream")
            for p in self.upstream.parameters():
                p.requires_grad_(True)  # the frozen speaker encoder's flags would read as "fixed by design"
            try:
                frozen = set(plan_freeze(self.upstream, "cnn", None, "the speaker model").frozen)
            except FinetuneError:
                frozen = set()
        for n, p in self.upstream.named_parameters():
            p.requires_grad_(n not in frozen)
        for p in [*self.head.parameters(), *self.id_output.parameters()]:
            p.requires_grad_(True)
        self.id_logits: Tensor | None = None

    @property
    def dim(self) -> int:
        return self.head.config.dim

    def train(self, mode: bool = True) -> "TrainableSpeaker":
        super().train(mode)
        if self.mode == "head":
            self.upstream.eval()  # frozen: no dropout either
        return self

    def forward(self, waveform: Tensor, lengths: Tensor) -> Tensor:
        from .heads import upstream_frames

        with torch.set_grad_enabled(self.mode == "all" and torch.is_grad_enabled()):
            frames, valid = upstream_frames(self.upstream, waveform, lengths, self.layer)
        h = self.head.embed(frames, valid)
        self.id_logits = self.id_output(h) if self.training else None
        return h


class JointLoss(nn.Module):
    """Eq. (6): alpha * L_emotion + beta * L_identification. ``targets`` (B, 2): the emotion class and the speaker's
    index among the fold's training speakers (-1 outside them: valid and test utterances, scored on L_emotion alone).
    L_identification is ArcFace on the speaker network's ``id_logits`` of the same forward."""

    def __init__(self, emotion: nn.Module, speaker: TrainableSpeaker, alpha: float, beta: float,
                 scale: float = 30.0, margin: float = 0.3):
        super().__init__()
        from ..downstream.losses import ArcFaceLoss

        self.emotion, self.speaker, self.alpha, self.beta = emotion, [speaker], float(alpha), float(beta)
        self.identification = ArcFaceLoss(scale, margin)

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:
        loss = self.alpha * self.emotion(outputs, targets[:, 0])
        logits = self.speaker[0].id_logits
        known = targets[:, 1] >= 0
        if self.beta and logits is not None and bool(known.any()):
            loss = loss + self.beta * self.identification(logits[known].float(), targets[known, 1])
        return loss

    def activate(self, outputs: Tensor) -> Tensor:
        return self.emotion.activate(outputs)
