#!/usr/bin/env bash
# The data engine, as the emotion2vec+ models were trained: label unlabelled speech -> keep the confident labels ->
# fine-tune on them and the seed set -> label again with the new model, for ROUNDS rounds. Every labelling model is
# scored on a labelled dev set that is never pseudo-labelled; $WORK/rounds.md tabulates the rounds (the model's dev
# UA / macro-F1, the files and hours of the labels it kept).
#
# Usage:  SEED=manifests/seed DEV=manifests/dev UNLABELLED=unlabelled/ recipes/data_engine.sh
#         MODEL=checkpoints/emotion2vec_plus_base SEED=... DEV=... UNLABELLED=podcasts.scp ROUNDS=3 recipes/data_engine.sh
#
# Environment:
#   SEED           labelled corpus folder (data.tsv + folds.json, e.g. from `emotion2vec prepare`): the seed set; it
#                  trains round 0 and is added to the pseudo-labels of every round (--train-with)
#   DEV            labelled corpus folder (data.tsv): scored every round (--score-on), never pseudo-labelled
#   UNLABELLED     what to label (space-separated): folders, audio files, data.tsv / wav.scp / .jsonl lists
#   BASE           the checkpoint every round fine-tunes (default checkpoints/emotion2vec_base.pt)
#   MODEL          the first labelling model (an emotion2vec+ folder or a `finetune` export); default: BASE
#                  fine-tuned on SEED (fold SEED_FOLD of its folds, default the first) in round 0
#   ROUNDS         label -> filter -> fine-tune rounds (default 2); a last labelling scores the last model
#   WORK           output folder (default data_engine): round<r>/labels (pseudo-label), round<r>/model (finetune),
#                  final/labels, rounds.md
#   LABEL_ARGS     extra `emotion2vec pseudo-label` options (filters: --min-confidence ...; --device, --labels ...)
#   FINETUNE_ARGS  extra `emotion2vec finetune` options (--epochs, --device, --freeze ...), round 0 included
#   LAUNCH         how to start the sharded steps (default: one process), e.g. "torchrun --nproc_per_node 8 -m"
#   PYTHON, E2V    as in recipes/common.sh
# A re-run resumes: pseudo-label reuses its stored predictions, finetune resumes its runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${SEED:?set SEED to the labelled seed corpus folder (data.tsv + folds.json)}"
: "${DEV:?set DEV to the labelled dev corpus folder (data.tsv)}"
: "${UNLABELLED:?set UNLABELLED to the audio to label (folders, files or lists)}"
BASE=${BASE:-checkpoints/emotion2vec_base.pt}
ROUNDS=${ROUNDS:-2}
WORK=${WORK:-data_engine}
read -r -a unlabelled <<<"$UNLABELLED"
read -r -a label_args <<<"${LABEL_ARGS:-}"
read -r -a finetune_args <<<"${FINETUNE_ARGS:-}"
read -r -a e2v <<<"$E2V"
if [[ -n ${LAUNCH:-} ]]; then
  read -r -a sharded <<<"$LAUNCH"
  sharded+=(emotion2vec)
else
  sharded=("${e2v[@]}")
fi

only_model() {  # the one exported model of a finetune run folder
  local models=("$1"/models/*/)
  if [[ ${#models[@]} -ne 1 || ! -d ${models[0]} ]]; then
    say "error: expected one model in $1/models, found ${#models[@]}"
    exit 1
  fi
  echo "${models[0]%/}"
}

label() {  # label MODEL OUT
  run "${sharded[@]}" pseudo-label "$1" --input "${unlabelled[@]}" --out "$2" --train-with "$SEED" --score-on "$DEV" \
    "${label_args[@]}"
}

model=${MODEL:-}
if [[ -z $model ]]; then
  say "round 0: fine-tune $BASE on the seed set $SEED"
  run "${e2v[@]}" finetune --checkpoint "$BASE" --data "$SEED" --out "$WORK/round0/model" --fold "${SEED_FOLD:-1}" \
    "${finetune_args[@]}"
  model=$(only_model "$WORK/round0/model")
fi
reports=()
for ((r = 1; r <= ROUNDS; r++)); do
  say "round $r: label with $model, keep the confident labels, fine-tune $BASE on them and the seed set"
  label "$model" "$WORK/round$r/labels"
  reports+=("$WORK/round$r/labels/report.json")
  run "${e2v[@]}" finetune --checkpoint "$BASE" --data "$WORK/round$r/labels" --out "$WORK/round$r/model" \
    "${finetune_args[@]}"
  model=$(only_model "$WORK/round$r/model")
done
say "last labelling: $model on the unlabelled audio and the dev set"
label "$model" "$WORK/final/labels"
reports+=("$WORK/final/labels/report.json")
"$PYTHON" -c 'import sys; from emotion2vec.pseudolabel.report import rounds_markdown; print(rounds_markdown(sys.argv[1:]), end="")' \
  "${reports[@]}" >"$WORK/rounds.md"
say "rounds (each labelling model on the dev set, and the labels it kept): $WORK/rounds.md"
cat "$WORK/rounds.md"
