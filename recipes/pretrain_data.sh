#!/usr/bin/env bash
# The emotion2vec pretraining set: IEMOCAP, MELD, MEAD, CMU-MOSEI and MSP-Podcast (262 h in the paper), decoded from
# the folders as distributed (MELD's .mp4 and MEAD's .m4a through PyAV), resampled to 16 kHz mono FLAC, clips under
# 0.5 s left out, one train.tsv plus a per-corpus hours table (hours.md). Re-running resumes: finished conversions
# are reused.
#
# Usage:  IEMOCAP=/data/IEMOCAP_full_release MELD=/data/MELD.Raw MEAD=/data/MEAD MOSEI=/data/CMU_MOSEI \
#         MSP_PODCAST=/data/MSP-PODCAST recipes/pretrain_data.sh
# Environment:
#   IEMOCAP, MELD, MEAD, MOSEI, MSP_PODCAST   the corpora as distributed; any may be left unset (it is skipped)
#   OUT        the manifest folder (default manifests/pretrain_emotion2vec)
#   AUDIO16K   where the 16 kHz FLAC copies go (default data/pretrain_16k)
#   EXCLUDE    space-separated lists (data.tsv, wav.scp, .jsonl) whose utterances are left out, e.g. the IEMOCAP
#              session you will test on: a data.tsv from `emotion2vec prepare iemocap` filtered to that session
#   WORKERS    conversion processes (default 2)
#   PYTHON / E2V as in recipes/common.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${OUT:-manifests/pretrain_emotion2vec}
AUDIO16K=${AUDIO16K:-data/pretrain_16k}

dirs=()
if [[ -n ${IEMOCAP:-} ]]; then  # utterance clips only (the dialog/wav folders hold the same speech as whole dialogs)
  found=0
  for s in "$IEMOCAP"/Session*/sentences/wav; do
    [[ -d $s ]] && { dirs+=("iemocap=$s"); found=1; }
  done
  if [[ $found == 0 ]]; then
    say "error: IEMOCAP=$IEMOCAP has no Session*/sentences/wav folders (set it to IEMOCAP_full_release)"
    exit 2
  fi
fi
[[ -n ${MELD:-} ]] && dirs+=("meld=$MELD")
[[ -n ${MEAD:-} ]] && dirs+=("mead=$MEAD")
[[ -n ${MOSEI:-} ]] && dirs+=("mosei=$MOSEI")
[[ -n ${MSP_PODCAST:-} ]] && dirs+=("msp-podcast=$MSP_PODCAST")
if [[ ${#dirs[@]} -eq 0 ]]; then
  say "error: set at least one of IEMOCAP, MELD, MEAD, MOSEI, MSP_PODCAST"
  exit 2
fi
exclude=()
for e in ${EXCLUDE:-}; do exclude+=(--exclude "$e"); done
run $E2V manifest "${dirs[@]}" --out "$OUT" --resample-to "$AUDIO16K" --min-seconds 0.5 \
  --num-workers "${WORKERS:-2}" "${exclude[@]}"
say "manifest: $OUT/train.tsv, hours per corpus: $OUT/hours.md"
