#!/usr/bin/env bash
# The emotion2vec paper's pretraining ablations (Tables 8-11), one named row per run: each row is the official
# configuration (configs/emotion2vec_base.yaml) plus the overrides listed below, launched with `emotion2vec pretrain`.
# Reproducing the paper's numbers needs the 262 h set (recipes/pretrain_data.sh) and GPUs: 100 000 updates of
# 4 GPUs x 600 k samples x update_freq 6 in the paper.
#
# Usage:  DATA=manifests/pretrain_emotion2vec INIT=checkpoints/base_libri.pt recipes/ablation.sh ROW [OVERRIDE...]
#         recipes/ablation.sh --list          # every row with its overrides
# Environment: DATA (task.data), INIT (the data2vec 2.0 checkpoint, base_libri.pt), INIT_V1 (data2vec (v1),
# audio_base_ls.pt, for init_data2vec), OUT (base folder as in recipes/common.sh; the run writes
# $OUT/outputs/ablation/ROW), PRINT=1 prints the fairseq-hydra-train
# line instead of running it (e.g. to run it under torchrun). Extra arguments are passed on as overrides.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# row -> overrides (the paper's value in the comment)
row_overrides() {
  case $1 in
    # Table 8, initialisation
    init_cold_start)      echo "model.init_from=null" ;;                                 # cold start: 61.34 / 62.71 / 61.19
    init_data2vec)        echo "model.init_from=${INIT_V1:-checkpoints/audio_base_ls.pt} model.init_layout=remap" ;;  # data2vec: 70.20 / 70.93 / 70.11
    init_data2vec2)       echo "model.init_from=${INIT:-checkpoints/base_libri.pt}" ;;       # data2vec 2.0: 71.79 / 72.69 / 71.80
    # Table 9 is a downstream comparison (utterance vs frame features) of the released model: see docs/paper.md
    # Table 10, losses
    loss_frame_only)      echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.utterance_loss_weight=0" ;;
    loss_utterance_only)  echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.frame_loss_weight=0" ;;
    loss_both)            echo "model.init_from=${INIT:-checkpoints/base_libri.pt}" ;;
    # Table 11, utterance-loss method and its weight alpha
    utterance_token)      echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.utterance_loss=token" ;;
    utterance_chunk)      echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.utterance_loss=chunk" ;;
    utterance_global)     echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.utterance_loss=global" ;;
    alpha_0)              echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.utterance_loss_weight=0" ;;
    alpha_0.1)            echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.utterance_loss_weight=0.1" ;;
    alpha_1)              echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.utterance_loss_weight=1" ;;
    alpha_10)             echo "model.init_from=${INIT:-checkpoints/base_libri.pt} model.utterance_loss_weight=10" ;;
    *) return 1 ;;
  esac
}
ROWS="init_cold_start init_data2vec init_data2vec2 loss_frame_only loss_utterance_only loss_both utterance_token
utterance_chunk utterance_global alpha_0 alpha_0.1 alpha_1 alpha_10"

if [[ ${1:-} == --list ]]; then
  for r in $ROWS; do printf '%-20s %s\n' "$r" "$(row_overrides "$r")"; done
  exit 0
fi
if [[ $# -lt 1 ]] || ! overrides=$(row_overrides "$1"); then
  say "usage: recipes/ablation.sh ROW [OVERRIDE...]   (rows: $(echo $ROWS); --list shows their overrides)"
  exit 2
fi
row=$1
shift
read -r -a row_args <<<"$overrides"
print=()
[[ ${PRINT:-0} == 1 ]] && print=(--print)
run $E2V pretrain emotion2vec_base "task.data=${DATA:-manifests/pretrain_emotion2vec}" \
  "checkpoint.save_dir=$OUT/outputs/ablation/$row" "${row_args[@]}" "$@" "${print[@]}"
