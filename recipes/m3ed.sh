#!/usr/bin/env bash
# M3ED (Chinese): 7 classes, official movie-level train/val/test split.
#
# Usage:  ROOT=/data/M3ED CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/m3ed.sh
#         ROOT=/data/M3ED recipes/m3ed.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main m3ed M3ED
