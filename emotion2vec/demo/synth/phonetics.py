"""The phonetic inventory: vowel formant targets, consonant places (formant loci), fricatives, stops, nasals,
and how often each onset and coda kind occurs."""

from __future__ import annotations

import numpy as np


# vowel targets (F1, F2, F3, F4) in Hz for an adult male vocal tract (Peterson & Barney-like)
VOWELS: dict[str, tuple[float, float, float, float]] = {
    "i": (280.0, 2250.0, 2950.0, 3600.0),
    "I": (400.0, 1950.0, 2600.0, 3500.0),
    "e": (480.0, 1850.0, 2550.0, 3500.0),
    "ae": (660.0, 1700.0, 2450.0, 3450.0),
    "a": (730.0, 1100.0, 2450.0, 3400.0),
    "o": (520.0, 880.0, 2400.0, 3350.0),
    "u": (310.0, 870.0, 2250.0, 3300.0),
    "U": (440.0, 1050.0, 2300.0, 3350.0),
    "V": (600.0, 1200.0, 2400.0, 3400.0),
}
_VOWEL_NAMES = tuple(VOWELS)
_VOWEL_TABLE = np.array([VOWELS[v] for v in _VOWEL_NAMES])
_SCHWA = np.array([500.0, 1500.0, 2500.0, 3450.0])
_BANDWIDTHS = np.array([70.0, 100.0, 150.0, 220.0])

# consonant places: formant loci (F1, F2, F3) the transitions start from / glide to
_LOCI = {
    "lab": (250.0, 850.0, 2250.0),
    "alv": (280.0, 1750.0, 2650.0),
    "post": (280.0, 2050.0, 2500.0),
    "vel": (280.0, 2100.0, 2300.0),
    "glot": (None, None, None),  # /h/: no locus, the vowel's own formants
}
# fricatives: (place, centre Hz, bandwidth Hz, level dB relative to the vowel)
_FRICATIVES = {"s": ("alv", 5800.0, 2600.0, -8.0), "sh": ("post", 3100.0, 1800.0, -6.0),
               "f": ("lab", 4500.0, 7000.0, -18.0)}
# stops: (place, burst centre Hz, burst bandwidth Hz)
_STOPS = {"p": ("lab", 1200.0, 2500.0), "t": ("alv", 4200.0, 3000.0), "k": ("vel", 2300.0, 1200.0)}
# nasals: (place, murmur formants F1, F2, F3)
_NASALS = {"m": ("lab", (260.0, 1000.0, 2200.0)), "n": ("alv", (260.0, 1500.0, 2500.0))}

_ONSET_KINDS = ("none", "fric", "stop", "nasal", "h")
_ONSET_P = (0.18, 0.27, 0.30, 0.15, 0.10)
_CODA_KINDS = ("none", "nasal", "fric")
_CODA_P = (0.6, 0.25, 0.15)
