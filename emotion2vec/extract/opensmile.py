"""openSMILE baselines as a feature backend: ``--checkpoint opensmile:SET[:LEVEL]``.

``SET`` is an openSMILE feature set (``eGeMAPSv02``: 88 functionals / 25 low-level descriptors, ``ComParE_2016``:
6373 functionals / 65 descriptors, or any other name of ``opensmile.FeatureSet``); ``LEVEL`` is

* ``functionals`` (the default): one vector per input, the utterance-level statistics the set defines. Stored as
  a single frame, so ``--granularity frame`` gives (1, D) and ``utterance`` gives (D,);
* ``lld``: the low-level descriptors, frames every 10 ms (T = 1 + (N - 800) // 160 at 16 kHz); ``utterance``
  is their mean.

Features are computed by the ``opensmile`` package (``pip install 'emotion2vec[opensmile]'``) on the 16 kHz
waveform without normalisation (loudness is a feature), one input at a time on the CPU, always on the whole input
(never in windows). Values openSMILE leaves undefined (NaN: an input under 50 ms has no complete frame) are set to 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..io.audio import SAMPLE_RATE
from . import ExtractionError

__all__ = ["OpenSmileBackend", "PREFIX", "LEVELS"]

PREFIX = "opensmile:"
#: our level name -> opensmile.FeatureLevel member
LEVELS = {"functionals": "Functionals", "lld": "LowLevelDescriptors"}
_HOP, _WINDOW = 160, 800  # descriptor frames: every 10 ms, the longest analysis window (eGeMAPS pitch) 50 ms


def _opensmile():
    try:
        import opensmile
    except ImportError:
        raise ExtractionError("opensmile: features need the opensmile package: pip install 'emotion2vec[opensmile]'") \
            from None
    return opensmile


class OpenSmileBackend:
    """openSMILE functionals (one vector per input) or low-level descriptors (100 frames/s).

    Implements the interface of :class:`~emotion2vec.extract.backends.Backend` (which loads this module on demand).
    """

    name = "opensmile"
    windowed = False  # functionals need the whole input; descriptors are cheap on any length

    def __init__(self, feature_set: str = "eGeMAPSv02", level: str = "functionals"):
        opensmile = _opensmile()
        sets = [s.name for s in opensmile.FeatureSet]
        if feature_set not in sets:
            raise ExtractionError(f"opensmile:{feature_set}: unknown feature set; choose one of {', '.join(sets)}")
        if level not in LEVELS:
            raise ExtractionError(f"opensmile:{feature_set}:{level}: unknown level; choose one of {', '.join(LEVELS)}")
        try:
            self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[feature_set],
                                         feature_level=opensmile.FeatureLevel[LEVELS[level]])
        except Exception as e:  # noqa: BLE001 - opensmile raises plain errors for unavailable combinations
            raise ExtractionError(f"opensmile:{feature_set}:{level}: {e}") from None
        self.feature_set, self.level, self.version = feature_set, level, opensmile.__version__
        self.device = torch.device("cpu")
        self.num_layers, self.dim = 1, len(self.smile.feature_names)
        self.frame_rate = SAMPLE_RATE / _HOP if level == "lld" else None  # functionals: one vector, no frame rate
        self.normalize = False
        self.description = f"openSMILE {self.version} {feature_set} {level} ({self.dim} features)"

    @classmethod
    def from_spec(cls, spec: str) -> "OpenSmileBackend":
        """``opensmile:SET`` or ``opensmile:SET:LEVEL``."""
        parts = spec[len(PREFIX):].split(":") if spec.startswith(PREFIX) else []
        if not 1 <= len(parts) <= 2 or not parts[0]:
            raise ExtractionError(f"{spec!r}: expected opensmile:SET or opensmile:SET:LEVEL (e.g. "
                                  f"opensmile:eGeMAPSv02, opensmile:ComParE_2016:lld)")
        return cls(*parts)

    def num_frames(self, num_samples: int) -> int:
        if self.level == "functionals":
            return 1
        return max(1, (int(num_samples) - _WINDOW) // _HOP + 1)

    def compute(self, wav: np.ndarray) -> np.ndarray:
        """One 16 kHz waveform -> (T, D) float32 (T = :meth:`num_frames`)."""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Segment too short, filling with NaN": handled below
            x = self.smile.process_signal(np.ascontiguousarray(wav, dtype=np.float32), SAMPLE_RATE).to_numpy()
        x = np.nan_to_num(x.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
        if x.shape[0] != self.num_frames(len(wav)):
            raise ExtractionError(f"opensmile:{self.feature_set}:{self.level}: openSMILE {self.version} returned "
                                  f"{x.shape[0]} frames for {len(wav)} samples, not {self.num_frames(len(wav))}")
        return x

    def forward(self, batch: torch.Tensor, lengths: torch.Tensor, layers: list[int]) -> torch.Tensor:
        feats = [self.compute(batch[b, :int(n)].cpu().numpy()) for b, n in enumerate(lengths)]
        out = torch.zeros(1, len(feats), max(f.shape[0] for f in feats), self.dim)
        for b, f in enumerate(feats):
            out[0, b, :f.shape[0]] = torch.from_numpy(f)
        return out

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "dtype": "float32", "checkpoint_stamp": f"opensmile {self.version}",
                "feature_set": self.feature_set, "level": self.level}
