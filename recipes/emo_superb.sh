#!/usr/bin/env bash
# EMO-SUPERB (Wu et al.) for one upstream: its nine conditions (MSP-IMPROV, MSP-Podcast and BIIC-Podcast with
# primary (P) and secondary (S) labels; CREMA-D, IEMOCAP, BIIC-NNIME), the raters' label distributions as soft
# targets with the class-balanced cross-entropy, a weighted sum of the upstream's layers, macro-F1 under the 1/C rule
# (ml_macro_f1); then the layout of its Table 3 with the Average, over every upstream run so far
# (`emotion2vec report --layout emo-superb`: results/emo_superb/table.md).
#
# Usage:  CHECKPOINT=hf:microsoft/wavlm-large recipes/emo_superb.sh [CONDITION...]
#         PRINT=1 recipes/emo_superb.sh          (print the commands only)
#   conditions: improv_p crema_d pod_p bpod_p iemocap nnime improv_s pod_s bpod_s (default: all nine)
# Environment: CHECKPOINT (default fbank, the paper's FBANK row), NAME (row name; default from CHECKPOINT),
#   DATA (default data): DATA/EMO-SUPERB (the benchmark's data folder: IMPROV/, NNIME/, BIIC_PODCAST/ with their
#   Audios/ and label folders), DATA/CREMA-D, DATA/MSP-Podcast, DATA/IEMOCAP_full_release; OUT; DEVICE.
# Training as the paper's Section 4.3 (learning rate 1e-4, batch 32, 200 epochs, the epoch with the lowest dev
# loss); the paper's optimiser is AdamW, the probe's Adam (no weight decay by default). CREMA-D is split by speakers
# into 5 folds here (its preparer's protocol); IEMOCAP keeps all its labels with EMO-SUPERB's session rotation.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CONDITIONS=${*:-improv_p crema_d pod_p bpod_p iemocap nnime improv_s pod_s bpod_s}
NAME=$(source_name)
ES=$DATA/EMO-SUPERB
if [[ ${PRINT:-0} == 1 ]]; then
  DEVICE=${DEVICE:-cuda}
  step() { printf 'emotion2vec'; printf ' %q' "$@"; printf '\n'; }
else
  DEVICE=${DEVICE:-$(default_device)}
  step() { run $E2V "$@"; }
fi

prepare_args() {  # condition -> corpus and options of `emotion2vec prepare`
  case $1 in
    improv_p) echo "msp-improv --root $ES/IMPROV --condition P" ;;
    improv_s) echo "msp-improv --root $ES/IMPROV --condition S" ;;
    bpod_p) echo "biic-podcast --root $ES/BIIC_PODCAST --condition P" ;;
    bpod_s) echo "biic-podcast --root $ES/BIIC_PODCAST --condition S" ;;
    nnime) echo "biic-nnime --root $ES/NNIME" ;;
    pod_p) echo "msp-podcast --root $DATA/MSP-Podcast --condition P --test-set Test1,Test2" ;;
    pod_s) echo "msp-podcast --root $DATA/MSP-Podcast --condition S --test-set Test1,Test2" ;;
    crema_d) echo "crema-d --root $DATA/CREMA-D" ;;
    iemocap) echo "iemocap --root $DATA/IEMOCAP_full_release --all-labels --protocol session-rotation" ;;
    *) return 1 ;;
  esac
}

for cond in $CONDITIONS; do
  if ! args=$(prepare_args "$cond"); then
    say "error: unknown condition '$cond'"
    exit 2
  fi
  read -r -a args <<<"$args"
  manifests=$OUT/manifests/emo_superb/$cond
  features=$OUT/features/emo_superb/$cond/$NAME
  results=$OUT/results/emo_superb/$cond/$NAME
  probe_extra=()
  [[ $cond == pod_* ]] && probe_extra=(--label-map other=)  # raters' "other" is no class of the benchmark
  layers=(--layers all)
  [[ $CHECKPOINT == fbank ]] && layers=()
  [[ -f $manifests/data.tsv && ${PRINT:-0} != 1 ]] || step prepare "${args[@]}" --out "$manifests"
  [[ -f $features/index.tsv && ${PRINT:-0} != 1 ]] ||
    step extract --checkpoint "$CHECKPOINT" --input "$manifests/data.tsv" --out "$features" "${layers[@]}" \
      --device "$DEVICE"
  probe_layer=(--layer weighted)
  [[ $CHECKPOINT == fbank ]] && probe_layer=()
  [[ -f $results/results.json && ${PRINT:-0} != 1 ]] ||
    step probe --features "$features" --data "$manifests" --out "$results" --name "$NAME" --task soft --loss cb-ce \
      --optimizer adam --lr 1e-4 --batch-size 32 --epochs 200 --select-metric loss "${probe_layer[@]}" \
      "${probe_extra[@]}" --device "$DEVICE"
done
step report "$OUT"/results/emo_superb/*/* --layout emo-superb --out "$OUT/results/emo_superb/table.md"
