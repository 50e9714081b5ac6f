#!/usr/bin/env bash
# One corpus, one feature source: emotion2vec prepare -> extract -> probe, each step skipped when its outputs exist.
#
# Usage:  ROOT=/data/URDU CHECKPOINT=checkpoints/emotion2vec_base.pt recipes/corpus.sh urdu
#         ROOT=/data/URDU recipes/corpus.sh urdu                  # log-mel fbank baseline (CHECKPOINT=fbank)
#         DATA=/data recipes/corpus.sh iemocap                     # looks for /data/IEMOCAP_full_release
# CORPUS is one of: iemocap meld ravdess ravdess-song savee emodb emovo cafe subesco shemo urdu aesdd resd m3ed
# mosi mosei. Every setting (OUT, DEVICE, NAME, PROTOCOL, GRANULARITY, LAYERS, *_ARGS, FORCE, ...) and each
# corpus's defaults are described in recipes/common.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [[ $# -ne 1 ]]; then
  say "usage: recipes/corpus.sh CORPUS   (one of: $CORPORA_ALL)"
  exit 2
fi
recipe_main "$1"
