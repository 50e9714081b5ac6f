"""A procedural, deterministic, speech-like emotional-speech synthesiser (numpy only) for the embedded demo corpus.

``make demo`` needs a corpus that is made on the spot (no downloads, no third-party audio), on which emotion is
learnable from prosody and voice quality, whose speakers differ enough for a speaker-independent split to mean
something, and which has the structure of speech that self-supervised pretraining can exploit. This package builds it
with classic source-filter synthesis:

* **Plan** (:mod:`.plan`): an utterance is a sequence of phrases separated by pauses; a phrase is a sequence of
  syllables ``[onset consonant] vowel [coda]``. Onsets are fricatives (/s/, /sh/, /f/), stops (closure, burst,
  aspiration), nasals or /h/; vowels come from a 9-vowel inventory with per-speaker idiosyncrasies; stressed syllables
  carry pitch accents, are longer and louder; phrase-final syllables are lengthened and carry a boundary tone.
* **Source** (:mod:`.source`): a Rosenberg glottal pulse train (open quotient and speed quotient set the voice
  quality, tense to breathy) differentiated for lip radiation, driven by a time-varying F0 contour (phrase declination
  + pitch accents + boundary tones + slow wander + micro-prosody + phrase-final creak) with per-period jitter and
  shimmer, plus pulsed aspiration noise; frication and burst noise for obstruents.
* **Filter** (:mod:`.filters`): a time-varying vocal-tract filter applied by STFT overlap-add (512-sample Hann frames,
  8 ms hop): a cascade of four formant resonators whose targets move per syllable with coarticulation glides
  (consonant loci, vowel targets), a spectral tilt, a nasal low-pass; frication noise goes through place-dependent
  band-pass shapes.
* **Channel** (:mod:`.render`): per-utterance level, random recording gain and microphone colouring, background noise
  of random colour at a random SNR (15-40 dB), random leading and trailing silence, random length (1.5-4 s).

Emotions (:mod:`.emotions`) shift, relative to each speaker's baseline (:mod:`.speakers`) and scaled by a random
per-utterance intensity (times the speaker's expressiveness), the classic correlates: F0 level and range, accent shape
and density, declination, boundary tones, speaking rate, pause structure, vocal effort and its variability,
jitter/shimmer, open quotient, aspiration, spectral tilt, formant shifts (raised F1 with effort, raised F2 when
smiling, centralised vowels when sad). Within-class variability makes classes overlap; the speakers' baselines (F0
from 90 to 260 Hz, vocal-tract length, voice quality, tempo, loudness) make absolute values only weakly informative.

Measured (12 speakers x 4 emotions x 10 utterances; logistic regression trained on 8 speakers, tested on the 4 unseen
ones, mean of 3 such folds; seeds 0-2): hand-crafted prosodic features (F0, energy, ZCR, syllable-rate statistics)
reach 53-65 % unweighted accuracy (69-76 % when z-scored per speaker), the utterance-mean log-mel spectrum 53-61 %; no
single feature exceeds 48 % (chance 25 %). Synthesis takes about 20 ms of CPU per 3 s of audio.

Everything derives from integer seeds (:mod:`.base`) through :class:`numpy.random.SeedSequence`: speaker ``i`` of
``seed`` is the same whatever ``n``; utterance ``(speaker, emotion, index)`` is the same whatever subset is generated;
same seed -> bit-identical files (on the same platform and numpy build: float32 transcendental functions may differ in
the last bit between CPUs).

The corpus writer (:mod:`.corpus`) turns utterances into files; :mod:`.phonetics` holds the inventory.
"""

from .base import EMOTIONS, GENDERS, SAMPLE_RATE, SynthError, utterance_rng
from .corpus import build_corpus, build_unlabelled
from .emotions import CIRCUMPLEX, PROFILES, EmotionProfile, utterance_dimensions
from .phonetics import VOWELS
from .plan import utterance_length
from .render import synthesize_utterance
from .speakers import Speaker, make_speaker, make_speakers

__all__ = ["SynthError", "SAMPLE_RATE", "EMOTIONS", "GENDERS", "VOWELS", "Speaker", "EmotionProfile", "PROFILES",
           "make_speakers", "make_speaker", "utterance_rng", "synthesize_utterance", "utterance_length", "build_corpus",
           "build_unlabelled", "CIRCUMPLEX", "utterance_dimensions"]
