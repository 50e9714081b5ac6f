#!/usr/bin/env bash
# CaFE (Canadian French): 7 classes, 936 utterances, 12 actors; random 10-fold 80/10/10.
#
# Usage:  ROOT=/data/CaFE CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/cafe.sh
#         ROOT=/data/CaFE recipes/cafe.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main cafe CaFE
