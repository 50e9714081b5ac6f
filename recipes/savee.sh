#!/usr/bin/env bash
# SAVEE: 7 classes, 480 utterances, 4 male speakers; random 10-fold 80/10/10.
#
# Usage:  ROOT=/data/SAVEE CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/savee.sh
#         ROOT=/data/SAVEE recipes/savee.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main savee SAVEE
