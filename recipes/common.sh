# Shared by recipes/corpus.sh and recipes/run_all.sh (source it, do not run it): prepare -> extract -> probe for
# ONE corpus and ONE feature source, with every step skipped when its outputs exist (re-running resumes).
#
# Environment (all optional except ROOT on the first run of a corpus):
#   ROOT          the corpus folder as distributed (default: $ROOT_<CORPUS>, e.g. ROOT_URDU or ROOT_RAVDESS_SONG,
#                 else $DATA/<usual folder name> as listed in corpus_defaults below)
#   DATA          folder holding the corpora under their usual names (default: data)
#   CHECKPOINT    the feature source (default fbank): a checkpoint (emotion2vec / data2vec 2.0 / data2vec (v1) .pt,
#                 FunASR or converted folder), hf:PATH (a Hugging Face folder or hub name), "fbank" (log-mel
#                 baseline) or opensmile:SET[:lld] (eGeMAPSv02, ComParE_2016; probed with --standardize)
#   NAME          feature-source name used in paths and tables (default: fbank, the checkpoint's file or folder
#                 name without extension, the last part of an hf: name, or the openSMILE set, e.g. eGeMAPSv02)
#   OUT           base folder of manifests/, features/, results/ (default: .)
#   DEVICE        cpu | cuda | cuda:N for extraction and probe (default: cuda when torch sees one, else cpu)
#   PROTOCOL      fold protocol for the probe (default: folds.json = the corpus's paper protocol, written by
#                 `emotion2vec prepare`); other protocols' folds are computed from data.tsv by the probe, and
#                 get their own results folder results/<corpus>-<protocol>/
#   GRANULARITY   frame | utterance (default frame: the official probe pools frames itself)
#   LAYERS        --layers for extract (default -1 = last block; MOSI/MOSEI: the last 4, averaged by the probe)
#   PROBE_LAYER   --layer for probe when several layers are extracted (e.g. mean, weighted)
#   TASK          --task for probe: categorical (default) | soft | multilabel | regression; other tasks get their own
#                 results folder results/<corpus>[-<protocol>]-<task>/ (regression: the table shows CCC columns)
#   TARGETS       --targets for TASK=regression (e.g. arousal,valence,dominance)
#   PREPARE_ARGS, EXTRACT_ARGS, PROBE_ARGS   extra arguments for each step (word-split)
#   PYTHON        interpreter with emotion2vec installed (default: $VIRTUAL_ENV's, else the repo's .venv, else python3)
#   E2V           how to run the CLI (default: "$PYTHON -m emotion2vec")
#   FORCE=1       redo every step even when its outputs exist
#
# Layout:  $OUT/manifests/<corpus>/{data.tsv,folds.json}   $OUT/features/<corpus>/<name>/
#          $OUT/results/<corpus>[-<protocol>]/<name>/{results.json,results.md,predictions.tsv,confusion.png}

RECIPES_DIR=$(cd -P "$(dirname "${BASH_SOURCE[0]}")" && pwd)  # physical: the repository even through a symlink
if [[ -z ${PYTHON:-} ]]; then
  if [[ -n ${VIRTUAL_ENV:-} && -x $VIRTUAL_ENV/bin/python ]]; then PYTHON=$VIRTUAL_ENV/bin/python
  elif [[ -x $RECIPES_DIR/../.venv/bin/python ]]; then PYTHON=$RECIPES_DIR/../.venv/bin/python
  else PYTHON=python3; fi
fi
E2V=${E2V:-"$PYTHON -m emotion2vec"}
CORPORA_ALL="iemocap meld ravdess ravdess-song savee emodb emovo cafe subesco shemo urdu aesdd resd m3ed mosi mosei"
OUT=${OUT:-.}
DATA=${DATA:-data}
CHECKPOINT=${CHECKPOINT:-fbank}
GRANULARITY=${GRANULARITY:-frame}
FORCE=${FORCE:-0}

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Print a command, then run it.
run() {
  printf '[%s] +' "$(date +%H:%M:%S)" >&2
  printf ' %q' "$@" >&2
  printf '\n' >&2
  "$@"
}

default_device() {
  if $PYTHON -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
    echo cuda
  else
    echo cpu
  fi
}

source_name() {  # NAME, or derived from CHECKPOINT
  if [[ -n ${NAME:-} ]]; then echo "$NAME"; return; fi
  if [[ $CHECKPOINT == fbank ]]; then echo fbank; return; fi
  if [[ $CHECKPOINT == hf:* ]]; then basename "${CHECKPOINT#hf:}"; return; fi     # hf:facebook/wavlm-base-plus
  if [[ $CHECKPOINT == opensmile:* ]]; then                                      # opensmile:ComParE_2016:lld
    local spec=${CHECKPOINT#opensmile:}; echo "${spec//:/_}"; return
  fi
  local base
  base=$(basename "${CHECKPOINT%/}")
  echo "${base%.*}"
}

results_dir() {  # results_dir CORPUS NAME
  local task=${TASK:-categorical}
  [[ $task == categorical ]] && task=""
  echo "$OUT/results/$1${PROTOCOL:+-$PROTOCOL}${task:+-$task}/$2"
}

# Extraction is complete when index.tsv exists and lists every key of data.tsv as ok (it may list more: the folder's
# outputs of other keys stay listed).
extraction_complete() {
  local index=$1/index.tsv data=$2
  [[ -f $index && -f $1/features.json ]] || return 1
  awk -F'\t' 'NR == FNR { if (FNR > 1 && $4 == "ok") ok[$1] = 1; next } FNR > 1 && !($1 in ok) { missing = 1 }
               END { exit missing }' "$index" "$data"
}

# corpus_defaults CORPUS -> "USUAL_FOLDER LAYERS PROBE_LAYER" (what differs between the paper's corpora):
#   the folder name the corpus is distributed under; the layers to extract (-1 = last block); how the probe
#   combines them. CMU-MOSI / MOSEI average the last 4 layers, as the paper does for sentiment (section 5.4).
corpus_defaults() {
  case $1 in
    iemocap) echo "IEMOCAP_full_release -1 -" ;;   # 4 classes, leave-one-session-out (PROTOCOL=loso-speaker: 10-fold)
    meld) echo "MELD.Raw -1 -" ;;                  # official split; convert the .mp4 first (prepare prints how)
    ravdess|ravdess-song) echo "RAVDESS -1 -" ;;   # speech: random 10-fold; song: random 5-fold
    savee) echo "SAVEE -1 -" ;;
    emodb) echo "EmoDB -1 -" ;;
    emovo) echo "EMOVO -1 -" ;;
    cafe) echo "CaFE -1 -" ;;
    subesco) echo "SUBESCO -1 -" ;;
    shemo) echo "ShEMO -1 -" ;;
    urdu) echo "URDU -1 -" ;;
    aesdd) echo "AESDD -1 -" ;;
    resd) echo "RESD -1 -" ;;                      # official 1116 / 280, 10 % of train as valid
    m3ed) echo "M3ED -1 -" ;;                      # official movie-level split
    mosi) echo "CMU-MOSI -4,-3,-2,-1 mean" ;;      # binary sentiment, last 4 layers averaged
    mosei) echo "CMU-MOSEI -4,-3,-2,-1 mean" ;;
    msp-podcast) echo "MSP-Podcast -1 -" ;;        # beyond the paper's set: official split (Test1), votes, A/V/D
    crema-d) echo "CREMA-D -1 -" ;;                # beyond the paper's set: speaker 5-fold, rater votes
    *) return 1 ;;
  esac
}

# recipe_main CORPUS
recipe_main() {
  local corpus=${1//_/-}
  local defaults default_root default_layers default_probe_layer
  if ! defaults=$(corpus_defaults "$corpus"); then
    say "error: unknown corpus '$1'; choose one of: $CORPORA_ALL"
    return 2
  fi
  read -r default_root default_layers default_probe_layer <<<"$defaults"
  [[ $default_probe_layer == - ]] && default_probe_layer=""
  local var="ROOT_${corpus^^}"
  var=${var//-/_}
  local root=${ROOT:-${!var:-$DATA/$default_root}}
  local name device manifests features results
  name=$(source_name)
  device=${DEVICE:-$(default_device)}
  manifests=$OUT/manifests/$corpus
  features=$OUT/features/$corpus/$name
  results=$(results_dir "$corpus" "$name")
  local -a prepare_args extract_args probe_args layer_args=() probe_layer_args=()
  read -r -a prepare_args <<<"${PREPARE_ARGS:-}"
  read -r -a extract_args <<<"${EXTRACT_ARGS:-}"
  read -r -a probe_args <<<"${PROBE_ARGS:-}"
  # openSMILE features mix units (Hz, dB, ratios): every eGeMAPS / ComParE baseline z-normalises them
  [[ $CHECKPOINT == opensmile:* ]] && probe_args=(--standardize "${probe_args[@]}")
  if [[ $CHECKPOINT != fbank ]]; then
    layer_args=("--layers=${LAYERS:-$default_layers}")  # "=": values like -4,-3 look like options
    local probe_layer=${PROBE_LAYER:-$default_probe_layer}
    [[ -n $probe_layer ]] && probe_layer_args=("--layer=$probe_layer")
  fi
  local -a force_extract=()
  [[ $FORCE == 1 ]] && force_extract=(--overwrite)

  say "== $corpus: features '$name' ($CHECKPOINT), device $device, protocol ${PROTOCOL:-default}, out $OUT"

  # 1. prepare: data.tsv + folds.json (the paper protocol)
  if [[ $FORCE != 1 && -f $manifests/data.tsv && -f $manifests/folds.json ]]; then
    say "prepare: $manifests exists, skipping"
  else
    if [[ ! -e $root ]]; then
      say "error: corpus folder '$root' not found: set ROOT (or $var, or DATA) to where $corpus lives"
      return 1
    fi
    run $E2V prepare "$corpus" --root "$root" --out "$manifests" "${prepare_args[@]}"
  fi

  # 2. extract: features/<corpus>/<name> (the extractor itself also resumes file by file)
  if [[ $FORCE != 1 ]] && extraction_complete "$features" "$manifests/data.tsv"; then
    say "extract: $features is complete, skipping"
  else
    run $E2V extract --checkpoint "$CHECKPOINT" --input "$manifests/data.tsv" --out "$features" \
      --granularity "$GRANULARITY" "${layer_args[@]}" --device "$device" "${force_extract[@]}" "${extract_args[@]}"
  fi

  # 3. probe: results/<corpus>/<name>
  if [[ $FORCE != 1 && -f $results/results.json ]]; then
    say "probe: $results/results.json exists, skipping"
  else
    run $E2V probe --features "$features" --data "$manifests" --out "$results" --name "$name" \
      ${PROTOCOL:+--protocol "$PROTOCOL"} ${TASK:+--task "$TASK"} ${TARGETS:+--targets "$TARGETS"} \
      --device "$device" "${probe_layer_args[@]}" "${probe_args[@]}"
  fi
  say "== $corpus / $name done: $results/results.md"
}
