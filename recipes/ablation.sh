#!/usr/bin/env bash
# The emotion2vec paper's ablations (Appendix C, Tables 8-11) as one pipeline. Per row: pretrain the official
# configuration (configs/emotion2vec_base.yaml) plus the row's overrides through fairseq-hydra-train
# (`emotion2vec pretrain`), extract the downstream corpus with the row's model, probe the features with the paper's
# protocol (the corpus's folds.json -- IEMOCAP: leave-one-session-out, 20 % of each fold's training set as valid --
# and the official probe recipe); then one table per ablation group in the paper's layout (`emotion2vec report
# --ablation`). Every step is skipped when its outputs exist, so a re-run resumes.
#
# Usage:  DATA=manifests/pretrain_emotion2vec INIT=checkpoints/base_libri.pt ROOT=data/IEMOCAP_full_release \
#             recipes/ablation.sh [ROW...] [OVERRIDE...]         (no ROW: every row; OVERRIDEs go to every pretrain)
#         recipes/ablation.sh --list                              every row with its overrides
#         recipes/ablation.sh --table                             the tables from the rows finished so far
# Reproducing the paper's numbers needs the 262 h set (recipes/pretrain_data.sh) and GPUs: 100 000 updates of
# 4 GPUs x 600 k samples x update_freq 6 per row in the paper.
#
# Environment: DATA (the pretraining manifest, task.data), INIT (the data2vec 2.0 checkpoint, base_libri.pt; INIT=null: no initialisation),
# INIT_V1 (data2vec (v1), audio_base_ls.pt, for init_data2vec), CONFIG (pretraining config, default
# emotion2vec_base; emotion2vec_tiny_cpu for a CPU run), CORPUS (downstream corpus, default iemocap: the paper's
# ablations), ROOT (its folder as distributed, for `emotion2vec prepare`), OUT (base folder as in recipes/common.sh:
# $OUT/outputs/ablation/ROW, $OUT/features/ablation/CORPUS/ROW, $OUT/results/ablation/CORPUS/ROW/{frm,utt,utt+frm},
# $OUT/results/ablation/CORPUS/tables.md), DEVICE, PRETRAIN_ARGS / EXTRACT_ARGS / PROBE_ARGS (extra arguments of each
# step), PRINT=1 (print each row's fairseq-hydra-train line, e.g. to run it under torchrun, and stop).
set -euo pipefail
PRETRAIN_DATA=${DATA:-manifests/pretrain_emotion2vec}  # common.sh reads DATA as the folder of the corpora
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

init_override() {  # the data2vec 2.0 initialisation, or none with INIT=null
  echo "model.init_from=${INIT:-checkpoints/base_libri.pt}"
}

# row -> overrides (the paper's WA / UA / WF1 on IEMOCAP in the comment)
row_overrides() {
  case $1 in
    # Table 8, initialisation
    init_cold_start)      echo "model.init_from=null" ;;                                 # 61.34 / 62.71 / 61.19
    init_data2vec)        echo "model.init_from=${INIT_V1:-checkpoints/audio_base_ls.pt} model.init_layout=remap" ;;  # 70.20 / 70.93 / 70.11
    init_data2vec2)       echo "$(init_override)" ;;                                     # 71.79 / 72.69 / 71.80
    # Table 9, losses (probed on frame features, utterance tokens and both: see DOWNSTREAMS below)
    loss_frame_only)      echo "$(init_override) model.utterance_loss_weight=0" ;;       # Frm 70.85 / 71.61 / 70.71
    loss_utterance_only)  echo "$(init_override) model.frame_loss_weight=0" ;;           # Utt 28.96 / 25.0 / 13.13
    loss_both)            echo "$(init_override)" ;;                                     # Frm 71.79 / 72.69 / 71.80
    # Table 10, utterance-loss method
    utterance_token)      echo "$(init_override) model.utterance_loss=token" ;;          # 70.46 / 71.07 / 70.33
    utterance_chunk)      echo "$(init_override) model.utterance_loss=chunk" ;;          # 71.79 / 72.69 / 71.80
    utterance_global)     echo "$(init_override) model.utterance_loss=global" ;;         # 70.30 / 71.52 / 70.18
    # Table 11, the utterance-loss weight alpha
    alpha_0)              echo "$(init_override) model.utterance_loss_weight=0" ;;       # 70.85 / 71.61 / 70.71
    alpha_0.1)            echo "$(init_override) model.utterance_loss_weight=0.1" ;;     # 71.06 / 72.16 / 71.08
    alpha_1)              echo "$(init_override) model.utterance_loss_weight=1" ;;       # 72.14 / 72.84 / 72.13
    alpha_10)             echo "$(init_override) model.utterance_loss_weight=10" ;;      # 70.58 / 71.37 / 70.61
    *) return 1 ;;
  esac
}
ROWS="init_cold_start init_data2vec init_data2vec2 loss_frame_only loss_utterance_only loss_both utterance_token
utterance_chunk utterance_global alpha_0 alpha_0.1 alpha_1 alpha_10"

# row -> the downstream features its tables probe: frm (frame features), utt (the utterance tokens), utt+frm (both)
downstreams() {
  case $1 in
    loss_utterance_only) echo "frm utt" ;;
    loss_both) echo "frm utt utt+frm" ;;
    *) echo "frm" ;;
  esac
}

CONFIG=${CONFIG:-emotion2vec_base}
CORPUS=${CORPUS:-iemocap}
RESULTS=$OUT/results/ablation/$CORPUS

tables() {
  run $E2V report --ablation "$RESULTS" --out "$RESULTS/tables.md"
  say "== ablation tables: $RESULTS/tables.md"
}

if [[ ${1:-} == --list ]]; then
  for r in $ROWS; do printf '%-20s %s\n' "$r" "$(row_overrides "$r")"; done
  exit 0
fi
if [[ ${1:-} == --table ]]; then
  tables
  exit 0
fi

rows=() extra=()
for a in "$@"; do
  if [[ $a == *=* ]]; then extra+=("$a")
  elif row_overrides "$a" >/dev/null; then rows+=("$a")
  else
    say "unknown row '$a' (rows: $(echo $ROWS); --list shows their overrides)"
    exit 2
  fi
done
[[ ${#rows[@]} -eq 0 ]] && read -r -a rows <<<"$(echo $ROWS)"
read -r -a pretrain_args <<<"${PRETRAIN_ARGS:-}"
read -r -a extract_args <<<"${EXTRACT_ARGS:-}"
read -r -a probe_args <<<"${PROBE_ARGS:-}"

pretrain_row() {  # pretrain_row ROW -> $OUT/outputs/ablation/ROW/checkpoint_last.pt
  local row=$1 save=$OUT/outputs/ablation/$1
  local -a row_args
  read -r -a row_args <<<"$(row_overrides "$row")"
  local -a command=($E2V pretrain "$CONFIG" "task.data=$PRETRAIN_DATA"
                    "checkpoint.save_dir=$save" "${row_args[@]}" "${pretrain_args[@]}" "${extra[@]}")
  if [[ ${PRINT:-0} == 1 ]]; then
    run "${command[@]}" --print
    return
  fi
  if [[ $FORCE != 1 && -f $save/.finished ]]; then
    say "pretrain: $save is finished, skipping"
    return
  fi
  run "${command[@]}"
  mkdir -p "$save" && touch "$save/.finished"
}

prepare_corpus() {
  local manifests=$OUT/manifests/$CORPUS
  if [[ $FORCE != 1 && -f $manifests/data.tsv && -f $manifests/folds.json ]]; then
    return
  fi
  local defaults
  defaults=$(corpus_defaults "$CORPUS") || { say "error: unknown corpus '$CORPUS'"; exit 2; }
  run $E2V prepare "$CORPUS" --root "${ROOT:-data/${defaults%% *}}" --out "$manifests"
}

extract_probe_row() {  # extract_probe_row ROW: features of the corpus, then one probe per downstream kind
  local row=$1 checkpoint=$OUT/outputs/ablation/$1/checkpoint_last.pt manifests=$OUT/manifests/$CORPUS
  local features=$OUT/features/ablation/$CORPUS/$1 device=${DEVICE:-$(default_device)}
  local kinds
  kinds=$(downstreams "$row")
  for granularity in frame tokens; do
    [[ $granularity == tokens && $kinds != *utt* ]] && continue
    local dir=$features/frm
    [[ $granularity == tokens ]] && dir=$features/utt
    if [[ $FORCE != 1 ]] && extraction_complete "$dir" "$manifests/data.tsv"; then
      say "extract: $dir is complete, skipping"
    else
      run $E2V extract --checkpoint "$checkpoint" --input "$manifests/data.tsv" --out "$dir" \
        --granularity "$granularity" --device "$device" "${extract_args[@]}"
    fi
  done
  for kind in $kinds; do
    local out=$RESULTS/$row/$kind
    if [[ $FORCE != 1 && -f $out/results.json ]]; then
      say "probe: $out/results.json exists, skipping"
      continue
    fi
    case $kind in
      frm) local -a inputs=(--features "$features/frm") ;;
      utt) local -a inputs=(--features "$features/utt") ;;
      utt+frm) local -a inputs=(--features "$features/frm" --concat-features "$features/utt") ;;
    esac
    run $E2V probe "${inputs[@]}" --data "$manifests" --out "$out" --name "$row ($kind)" --device "$device" \
      "${probe_args[@]}"
  done
}

[[ ${PRINT:-0} != 1 ]] && prepare_corpus
for row in "${rows[@]}"; do
  say "== ablation row $row: $(row_overrides "$row")"
  pretrain_row "$row"
  [[ ${PRINT:-0} == 1 ]] && continue
  extract_probe_row "$row"
done
[[ ${PRINT:-0} == 1 ]] || tables
