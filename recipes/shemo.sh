#!/usr/bin/env bash
# ShEMO (Persian): 6 classes; random 10-fold 80/10/10.
#
# Usage:  ROOT=/data/ShEMO CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/shemo.sh
#         ROOT=/data/ShEMO recipes/shemo.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main shemo ShEMO
