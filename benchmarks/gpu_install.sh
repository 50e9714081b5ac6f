#!/usr/bin/env bash
# Installs the wheels of a bundle from benchmarks/gpu_prepare.sh with `pip --target` (no index, no dependencies: the
# bundle holds exactly what the machine lacks), then imports every package the wheels put there and checks that it
# comes from TARGET (not from an older copy elsewhere on the path).
#   benchmarks/gpu_install.sh BUNDLE TARGET [PY]                 (PY default python3)
#   benchmarks/gpu_install.sh BUNDLE TARGET PY --dry-run 3.12     pip's check, installing nothing, that every wheel
#                                                                suits CPython 3.12 on manylinux x86_64
set -euo pipefail
BUNDLE=$1
TARGET=$2
PY=${3:-python3}
if [ "${4:-}" = "--dry-run" ]; then
  platforms=()
  for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
             manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
  done
  "$PY" -m pip install --dry-run --no-index --no-deps --only-binary=:all: --target "$TARGET" \
    --python-version "$5" --implementation cp "${platforms[@]}" "$BUNDLE"/wheels/*.whl
  exit
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TARGET" \
  "$BUNDLE"/wheels/*.whl
PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" "$PY" -P - "$TARGET" <<'PY'  # -P: not the working directory
import importlib, os, sys
from pathlib import Path

target = Path(os.path.realpath(sys.argv[1]))
names = set()  # the top-level packages and modules the wheels installed
for record in target.glob("*.dist-info/RECORD"):
    for line in record.read_text().splitlines():
        first = line.split(",", 1)[0].split("/", 1)[0]
        if first.endswith(".py"):
            first = first[:-3]
        if first.isidentifier() and not first.startswith("_"):
            names.add(first)
failed, elsewhere = [], []
for name in sorted(names):
    try:
        module = importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - report every package that does not import
        failed.append(f"{name} ({type(e).__name__}: {e})")
        continue
    origin = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", [])), "")
    if not os.path.realpath(origin).startswith(str(target)):
        elsewhere.append(f"{name} ({origin})")
if failed or elsewhere:
    sys.exit("error: " + "; ".join([*(f"does not import: {f}" for f in failed),
                                     *(f"imported from outside {target}: {e}" for e in elsewhere)]))
import torch  # noqa: E402

print(f"installed into {target}: {', '.join(sorted(names))} import from there; the machine's torch "
      f"{torch.__version__}, CUDA {torch.cuda.is_available()}")
PY
