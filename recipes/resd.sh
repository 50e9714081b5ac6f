#!/usr/bin/env bash
# RESD (Russian): 7 classes, official 1116 train / 280 test, 10% of train as valid.
#
# Usage:  ROOT=/data/RESD CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/resd.sh
#         ROOT=/data/RESD recipes/resd.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main resd RESD
