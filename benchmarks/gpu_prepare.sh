#!/usr/bin/env bash
# Gathers what benchmarks/gpu_check.sh needs on a bare GPU machine (no network, its own python3 + torch, none of
# our packages) into ONE folder, git-ignored, under 64 MiB:
#   wheels/           the wheels that machine lacks, for --python-version (default 3.12) manylinux x86_64, at the
#                     versions installed here: fairseq-fixed, bitarray, cffi, pycparser, hydra-core, omegaconf,
#                     soundfile, soxr; antlr4-python3-runtime (sdist only on PyPI) built here as a pure wheel; our
#                     package as a wheel
#   shared/peers/     the peer scripts, and peer_cache/peer_funasr: FunASR's emotion2vec model code, unpacked here
#   shared/data/urdu/ URDU resampled to 16 kHz, 16-bit FLAC, the corpus's folders kept (--urdu-files N: the first N)
#   shared/fixtures/checkpoints/  the golden checkpoints and reference vectors gpu_check.sh compares against
# Then prints the bundle's size and fails if it is 64 MiB or more.
#
#   benchmarks/gpu_prepare.sh [--python-version 3.12] [--urdu-files N] [BUNDLE]   (default BUNDLE .gpu_bundle)
#   PY=python E2V_SHARED=DIR: the interpreter whose package versions to bundle, the shared folder to read.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${E2V_SHARED:-../shared}
PYVER=3.12
URDU_FILES=0
BUNDLE=.gpu_bundle
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version) PYVER=$2; shift 2 ;;
    --urdu-files) URDU_FILES=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) BUNDLE=$1; shift ;;
  esac
done
LIMIT_MIB=64
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels" "$BUNDLE/shared/peers" "$BUNDLE/shared/peer_cache" "$BUNDLE/shared/fixtures/checkpoints"
version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

echo "== wheels for Python $PYVER (versions installed in $PY)"
specs=()
for name in fairseq-fixed bitarray cffi pycparser hydra-core omegaconf soundfile soxr; do
  specs+=("$name==$(version "$name")")
done
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$BUNDLE/wheels" "${specs[@]}"
"$PY" -m pip wheel -q --no-deps --no-binary=:all: -w "$BUNDLE/wheels" \
  "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
had_build=$([ -e build ] && echo 1 || true)
had_egg_info=$([ -e emotion2vec.egg-info ] && echo 1 || true)
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$BUNDLE/wheels" . >/dev/null
[ -n "$had_build" ] || rm -rf build            # what building our wheel left here, and only that
[ -n "$had_egg_info" ] || rm -rf emotion2vec.egg-info

echo "== peers"
cp "$SHARED"/peers/*.py "$SHARED"/peers/*.sh "$BUNDLE/shared/peers/"
cp -r "$SHARED/peers/stubs" "$BUNDLE/shared/peers/"
PY="$PY" bash "$SHARED/peers/funasr_emotion2vec.sh" "$BUNDLE/shared/peer_cache/peer_funasr" >/dev/null

echo "== golden fixtures"
for f in tiny_emotion2vec.pt tiny_reference.npz legacy_data2vec2.pt legacy_reference.npz funasr_emotion2vec \
         funasr_reference.npz funasr_emotion2vec_plus plus_reference.npz README.md; do
  cp -r "$SHARED/fixtures/checkpoints/$f" "$BUNDLE/shared/fixtures/checkpoints/"
done

echo "== URDU at 16 kHz"
PYTHONPATH=. "$PY" - "$SHARED/data/urdu" "$BUNDLE/shared/data/urdu" "$URDU_FILES" <<'PY'
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from emotion2vec.io.audio import load_audio

src, dst, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
files = files[:limit] if limit else files
for p in files:
    out = (dst / p.relative_to(src)).with_suffix(".flac")
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, np.clip(load_audio(p), -1, 1), 16000, subtype="PCM_16")
print(f"{len(files)} files")
PY

size=$(du -sb "$BUNDLE" | cut -f1)
echo "== $BUNDLE: $(ls "$BUNDLE/wheels" | wc -l) wheels, $(( size / 1048576 )) MiB ($size bytes)"
if [ "$size" -ge $(( LIMIT_MIB * 1048576 )) ]; then
  echo "error: $BUNDLE is over $LIMIT_MIB MiB; use --urdu-files N" >&2
  exit 1
fi
