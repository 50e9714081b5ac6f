#!/usr/bin/env bash
# RAVDESS speech: 8 classes, 1440 utterances, 24 actors; random 10-fold 80/10/10.
#
# Usage:  ROOT=/data/RAVDESS CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/ravdess.sh
#         ROOT=/data/RAVDESS recipes/ravdess.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main ravdess RAVDESS
