#!/usr/bin/env bash
# SUBESCO (Bangla): 7 classes, 7000 utterances, 20 speakers; random 10-fold 80/10/10.
#
# Usage:  ROOT=/data/SUBESCO CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/subesco.sh
#         ROOT=/data/SUBESCO recipes/subesco.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main subesco SUBESCO
