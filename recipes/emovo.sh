#!/usr/bin/env bash
# EMOVO (Italian): 7 classes, 588 utterances, 6 speakers; random 10-fold 80/10/10.
#
# Usage:  ROOT=/data/EMOVO CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/emovo.sh
#         ROOT=/data/EMOVO recipes/emovo.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main emovo EMOVO
