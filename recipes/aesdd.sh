#!/usr/bin/env bash
# AESDD (Greek): 5 classes, 604 utterances; random 10-fold 80/10/10.
#
# Usage:  ROOT=/data/AESDD CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/aesdd.sh
#         ROOT=/data/AESDD recipes/aesdd.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main aesdd AESDD
