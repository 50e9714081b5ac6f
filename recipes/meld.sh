#!/usr/bin/env bash
# MELD: 7 classes, official train/dev/test split (one fold). The .mp4 clips must be converted to
# audio first; pass PREPARE_ARGS="--audio-dir DIR" when the converted tree lives elsewhere.
#
# Usage:  ROOT=/data/MELD.Raw CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/meld.sh
#         ROOT=/data/MELD.Raw recipes/meld.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main meld MELD.Raw
