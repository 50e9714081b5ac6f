#!/usr/bin/env bash
# CMU-MOSI: binary sentiment (neutral segments left out), standard train/valid/test. As in the
# paper (section 5.4) the probe averages the last 4 layers: LAYERS=-4,-3,-2,-1 PROBE_LAYER=mean by default.
# The paper reports WA and WF1 here.
#
# Usage:  ROOT=/data/CMU-MOSI CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/mosi.sh
#         ROOT=/data/CMU-MOSI recipes/mosi.sh            # log-mel fbank baseline (CHECKPOINT=fbank)
# Steps: emotion2vec prepare -> extract -> probe, each skipped when its outputs exist. All settings
# (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_main mosi CMU-MOSI -4,-3,-2,-1 mean
