#!/usr/bin/env bash
# RAVDESS song: 6 classes, 1012 utterances, 23 actors; random 5-fold (paper App. B).
#
# Usage:  ROOT=/data/RAVDESS CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/ravdess_song.sh
#         ROOT=/data/RAVDESS recipes/ravdess_song.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main ravdess-song RAVDESS
