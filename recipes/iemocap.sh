#!/usr/bin/env bash
# IEMOCAP: 4 classes (neutral, happy+excited, angry, sad), 5531 utterances; leave-one-session-out
# 5-fold with 20% of the training sessions as valid (paper Table 2). PROTOCOL=loso-speaker gives the 10-fold
# leave-one-speaker-out variant.
#
# Usage:  ROOT=/data/IEMOCAP_full_release CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/iemocap.sh
#         ROOT=/data/IEMOCAP_full_release recipes/iemocap.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main iemocap IEMOCAP_full_release
