#!/usr/bin/env bash
# Run the recipes of several corpora for every feature source -- the log-mel fbank baseline and each source in
# CHECKPOINTS -- then write one markdown table across corpora in the layout of the paper's Tables 2-4:
# rows = feature sources, per corpus the columns WA / UA / WF1, cells mean ± std over folds in percent.
#
# Usage:  DATA=/data CHECKPOINTS="checkpoints/emotion2vec_base.pt checkpoints/data2vec2_base.pt" recipes/run_all.sh
#         CORPORA="iemocap urdu" ROOT_IEMOCAP=/corpora/IEMOCAP_full_release recipes/run_all.sh
#         CHECKPOINTS="opensmile:eGeMAPSv02 checkpoints/audio_base_ls.pt hf:microsoft/wavlm-base-plus" recipes/run_all.sh
#
# Environment (plus everything of recipes/common.sh except ROOT and NAME, which are per corpus / per source):
#   CORPORA       corpus names (default: all 16: iemocap meld ravdess ravdess-song savee emodb emovo cafe subesco
#                 shemo urdu aesdd resd m3ed mosi mosei)
#   CHECKPOINTS   space-separated feature sources, in table order after fbank (default: none, i.e. only the fbank
#                 baseline): checkpoints (emotion2vec / data2vec 2.0 / data2vec (v1) .pt, FunASR or converted
#                 folders), hf:PATH (Hugging Face folder or hub name), opensmile:SET[:lld] (see recipes/common.sh)
#   FBANK=0       leave out the fbank baseline
#   ROOT_<CORPUS> a corpus's folder (e.g. ROOT_IEMOCAP, ROOT_RAVDESS_SONG), else $DATA/<usual name>
#   TABLE         the table file (default: $OUT/results/table.md)
#   TABLE_METRICS metrics of each corpus group (default: wa,ua,wf1; also macro_f1); regression runs (TASK=regression
#                 TARGETS=arousal,valence,dominance) get CCC columns instead: the mean and one per target
# A failing corpus/source is reported and skipped; the table covers what finished; exit status 1 if any failed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CORPORA=${CORPORA:-$CORPORA_ALL}
read -r -a checkpoints <<<"${CHECKPOINTS:-}"
sources=()
[[ ${FBANK:-1} == 1 ]] && sources+=(fbank)
for checkpoint in "${checkpoints[@]}"; do
  [[ $checkpoint == fbank && ${FBANK:-1} == 1 ]] || sources+=("$checkpoint")  # fbank listed twice runs once
done
if [[ ${#sources[@]} -eq 0 ]]; then
  say "error: nothing to run (FBANK=0 and no CHECKPOINTS)"
  exit 2
fi
TABLE=${TABLE:-$OUT/results/table.md}

failed=()
dirs=()
names=()
corpus_names=()
for corpus in $CORPORA; do
  corpus=${corpus//_/-}  # ravdess_song -> ravdess-song, as the CLI spells it
  if ! corpus_defaults "$corpus" >/dev/null; then
    say "error: unknown corpus '$corpus'; choose from: $CORPORA_ALL"
    failed+=("$corpus")
    continue
  fi
  corpus_names+=("$corpus")
  for checkpoint in "${sources[@]}"; do
    name=$(NAME="" CHECKPOINT=$checkpoint source_name)
    if ! (unset ROOT NAME; CHECKPOINT=$checkpoint "$RECIPES_DIR/corpus.sh" "$corpus"); then
      say "FAILED: $corpus with $checkpoint (continuing)"
      failed+=("$corpus/$name")
    fi
    dirs+=("$(results_dir "$corpus" "$name")")
  done
done
for checkpoint in "${sources[@]}"; do
  names+=("$(NAME="" CHECKPOINT=$checkpoint source_name)")
done

if [[ ${#corpus_names[@]} -gt 0 ]]; then
  join() { local IFS=,; echo "$*"; }
  run $E2V report "${dirs[@]}" --skip-missing \
    --sources "$(join "${names[@]}")" \
    --metrics "${TABLE_METRICS:-wa,ua,wf1}" --out "$TABLE" || failed+=("table")
  say "table: $TABLE"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  say "failed: ${failed[*]}"
  exit 1
fi
