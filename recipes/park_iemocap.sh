#!/usr/bin/env bash
# Park et al., "Using Speaker-Specific Emotion Representations in Wav2vec 2.0-Based Modules for Speech Emotion
# Recognition": IEMOCAP leave-one-session-out (4 classes) with their speaker-identification network trained on
# VoxCeleb1's identification split, then the layout of their Tables 2 and 6 (`emotion2vec report --layout park`).
#
# Steps (a step whose results.json exists is skipped; re-running resumes):
#   1. prepare VoxCeleb1 (iden_split.txt) and IEMOCAP (4 classes, leave-one-session-out)
#   2. the speaker-identification network (FC, one attention block, max-pool) with ArcFace and with cross-entropy
#   3. the emotion network (ReLU, FC, K attention blocks max-pooled, Eq. 5 fusion) for K in BLOCKS, each loss
#   4. the speaker-specific emotion representation network: each fold's emotion network integrated with the ArcFace
#      speaker network, frozen (`--start-from` the step-3 run, `--fusion park`: W_fusion extended to K + 1 rows)
#   5. the tables: results/park/tables.md
# Training as the paper's Table 1 and Section 4.2: 3-s repeat-padding, inputs cut to 15 s, gradient clipping at
# 100, Adam (0.9, 0.98) with weight decay 1e-8, learning rates 3e-5 / 3e-5 / 1e-5, gradient accumulation 2 / 4 / 4,
# batches of 16 / 6 / 6 inputs (as seconds of audio: 16 x 15 s, 6 x 15 s), early stopping after 5 / 10 / 10 epochs,
# at most 50 / 150 / 100 epochs.
#
# Usage:  recipes/park_iemocap.sh                 PRINT=1 recipes/park_iemocap.sh   (print the commands only)
# Environment: CHECKPOINT (default hf:facebook/wav2vec2-base, the paper's wav2vec 2.0 base), DATA (default data:
#   DATA/VoxCeleb1 and DATA/IEMOCAP_full_release), OUT (default .), DEVICE (default cuda when available),
#   BLOCKS (default "1 2 3 4"), LOSSES (default "arcface linear": ArcFace and the cross-entropy variant),
#   BETAS (default none; e.g. "0.1 0.5 1"): their Fig. 7b-c, the speaker network trained with the emotion network
#   (4 blocks, ArcFace) by Eq. (6) with each beta, its layers after the upstream (head) or everything (all),
#   The paper's training details: inputs repeated up to 3 s, at most 15 s, gradient clipping at 100, weight decay
#   1e-8, the learning rate x0.98 after every epoch; the emotion networks under-sample IEMOCAP's larger classes.
set -euo pipefail
CHECKPOINT=${CHECKPOINT:-hf:facebook/wav2vec2-base}  # before common.sh, whose default is the fbank baseline
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BLOCKS=${BLOCKS:-1 2 3 4}
LOSSES=${LOSSES:-arcface linear}
RESULTS=$OUT/results/park
if [[ ${PRINT:-0} == 1 ]]; then
  DEVICE=${DEVICE:-cuda}
  step() { printf 'emotion2vec'; printf ' %q' "$@"; printf '\n'; }
else
  DEVICE=${DEVICE:-$(default_device)}
  step() { run $E2V "$@"; }
fi
done_() { [[ ${PRINT:-0} != 1 && -f $1/results.json ]] && say "skip: $1 is done"; }
common=(--max-seconds 15 --repeat-pad 3 --clip-norm 100 --weight-decay 1e-8 --schedule exponential --lr-decay 0.98
        --warmup 0 --device "$DEVICE")

# 1. the corpora
[[ -f $OUT/manifests/voxceleb1/data.tsv && ${PRINT:-0} != 1 ]] ||
  step prepare voxceleb1 --root "$DATA/VoxCeleb1" --out "$OUT/manifests/voxceleb1"
[[ -f $OUT/manifests/iemocap/data.tsv && ${PRINT:-0} != 1 ]] ||
  step prepare iemocap --root "$DATA/IEMOCAP_full_release" --out "$OUT/manifests/iemocap"

# 2. the speaker-identification network (Table 2)
for loss in $LOSSES; do
  done_ "$RESULTS/speaker_$loss" ||
    step finetune --checkpoint "$CHECKPOINT" --data "$OUT/manifests/voxceleb1" --out "$RESULTS/speaker_$loss" \
      --task speaker --speaker-split official --park-blocks 1 --head "$loss" --lr 3e-5 --head-lr 3e-5 \
      --batch-seconds 240 --accumulate 2 --patience 5 --epochs 50 "${common[@]}"
done

# 3. the emotion network, 1 to 4 attention blocks (Table 6, upper half)
for k in $BLOCKS; do
  for loss in $LOSSES; do
    done_ "$RESULTS/emotion_k${k}_$loss" ||
      step finetune --checkpoint "$CHECKPOINT" --data "$OUT/manifests/iemocap" --out "$RESULTS/emotion_k${k}_$loss" \
        --park-blocks "$k" --head "$loss" --lr 3e-5 --head-lr 3e-5 --batch-seconds 90 --accumulate 4 --patience 10 \
        --epochs 150 --undersample "${common[@]}"
  done
done

# 4. the speaker-specific emotion representation network, speaker network frozen (Table 6, lower half; Table 4)
for k in $BLOCKS; do
  for loss in $LOSSES; do
    done_ "$RESULTS/aware_k${k}_$loss" ||
      step finetune --checkpoint "$CHECKPOINT" --data "$OUT/manifests/iemocap" --out "$RESULTS/aware_k${k}_$loss" \
        --start-from "$RESULTS/emotion_k${k}_$loss" --init-head keep \
        --speaker-model "$RESULTS/speaker_arcface/models/speaker" --fusion park --park-blocks "$k" --head "$loss" \
        --lr 1e-5 --head-lr 1e-5 --batch-seconds 90 --accumulate 4 --patience 10 --epochs 100 --undersample "${common[@]}"
  done
done

# 4b. their Fig. 7b-c: the speaker network trained with the emotion network by Eq. (6), per beta (BETAS, default none)
for beta in ${BETAS:-}; do
  for mode in head all; do
    done_ "$RESULTS/joint_${mode}_beta$beta" ||
      step finetune --checkpoint "$CHECKPOINT" --data "$OUT/manifests/iemocap" --out "$RESULTS/joint_${mode}_beta$beta" \
        --start-from "$RESULTS/emotion_k4_arcface" --init-head keep \
        --speaker-model "$RESULTS/speaker_arcface/models/speaker" --fusion park --park-blocks 4 --head arcface \
        --speaker-train "$mode" --emotion-weight 1 --id-weight "$beta" \
        --lr 1e-5 --head-lr 1e-5 --batch-seconds 90 --accumulate 4 --patience 10 --epochs 100 --undersample "${common[@]}"
  done
done

# 5. the tables
joint=()
for beta in ${BETAS:-}; do joint+=("$RESULTS/joint_head_beta$beta" "$RESULTS/joint_all_beta$beta"); done
step report "$RESULTS"/speaker_* "$RESULTS"/emotion_k* "$RESULTS"/aware_k* "${joint[@]}" --layout park \
  --out "$RESULTS/tables.md"
