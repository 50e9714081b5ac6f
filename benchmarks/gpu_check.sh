#!/usr/bin/env bash
# GPU checks in one script, under 8 minutes on an H100 / H200 (run from the repository root):
#   1. forward parity: the golden checkpoints on the GPU in fp32 (TF32 off) against their reference vectors, and bf16
#      against fp32 (relative L2 per utterance) on URDU clips; forward speed fp32 / bf16 (benchmarks/forward.py)
#   2. URDU extraction against FunASR's emotion2vec on the GPU, in the same run (benchmarks/extract.py --device cuda)
#   3. the pretraining step in bf16 / fp16 against fairseq's data2vec 2.0 step on the GPU (benchmarks/pretrain_step.py)
#   4. 20 updates of fairseq-hydra-train with the base config in fp16 (cold start on URDU): every loss finite
#
#   benchmarks/gpu_check.sh [OUT_DIR]        (default gpu_check_out)
#
# Two set-ups. With a bundle from benchmarks/gpu_prepare.sh (default .gpu_bundle, or BUNDLE=DIR): a bare machine
# with its own python3 and torch and no network; the bundle's wheels are installed with `pip --target` into TARGET
# (default /tmp/e2v_site) and the bundle's shared/ folder (peers, URDU at 16 kHz, golden fixtures) is used. Without
# one: this repository's .venv and the shared folder ($E2V_SHARED, default ../shared). PY=python overrides either.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check_out}
BUNDLE=${BUNDLE:-.gpu_bundle}
if [ -d "$BUNDLE/wheels" ]; then
  PY=${PY:-python3}
  TARGET=${TARGET:-/tmp/e2v_site}
  bash benchmarks/gpu_install.sh "$BUNDLE" "$TARGET" "$PY"
  export PYTHONPATH="$PWD:$TARGET${PYTHONPATH:+:$PYTHONPATH}"
  export E2V_SHARED="$PWD/$BUNDLE/shared" E2V_PEER_CACHE="$PWD/$BUNDLE/shared/peer_cache"
else
  PY=${PY:-.venv/bin/python}
fi
SHARED=${E2V_SHARED:-../shared}
export E2V_SHARED="$SHARED"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
start=$(date +%s)
step() { echo; echo "== $1 ($(( $(date +%s) - start )) s)"; }

step "1/4 forward parity and speed"
"$PY" - "$SHARED" <<'PY'
import copy, glob, sys
import numpy as np, torch
from emotion2vec.extract.backends import ModelBackend, load_backend
from emotion2vec.io.audio import load_audio, normalize_waveform
from emotion2vec.models.config import preset
from emotion2vec.models.encoder import Emotion2VecModel
shared = sys.argv[1]
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
print("#", torch.cuda.get_device_name(0), "torch", torch.__version__)
fx = f"{shared}/fixtures/checkpoints"
for ckpt, ref in [("tiny_emotion2vec.pt", "tiny"), ("legacy_data2vec2.pt", "legacy"), ("funasr_emotion2vec", "funasr")]:
    b = load_backend(f"{fx}/{ckpt}", "cuda")
    r = np.load(f"{fx}/{ref}_reference.npz")
    err = 0.0
    for i in range(4):
        w = torch.from_numpy(r[f"wav{i}"])
        x = (normalize_waveform(w) if b.normalize else w)[None]
        f = b.forward(x, torch.tensor([x.shape[1]]), [b.num_layers - 1])[0, 0].cpu().numpy()
        err = max(err, float(np.abs(f - r[f"x{i}"]).max()))
    print(f"golden {ckpt}: GPU fp32 max abs error {err:.1e} ({'ok' if err < 1e-4 else 'FAIL'} at 1e-4)")
torch.manual_seed(0)
model = Emotion2VecModel(preset("emotion2vec_base"), with_decoder=False)
fp32 = ModelBackend(model, torch.device("cuda"))
bf16 = ModelBackend(copy.deepcopy(model), torch.device("cuda"), torch.bfloat16)
rel = []
for p in sorted(glob.glob(f"{shared}/data/urdu/**/*.wav", recursive=True)
                + glob.glob(f"{shared}/data/urdu/**/*.flac", recursive=True))[:50]:
    x = normalize_waveform(torch.from_numpy(load_audio(p)))[None]
    a, b = (m.forward(x, torch.tensor([x.shape[1]]), [11])[0, 0].double() for m in (fp32, bf16))
    rel.append(float((b - a).norm() / a.norm()))
print(f"base geometry, bf16 vs fp32 on the GPU, frame-level relative L2 per utterance (50 URDU clips): median "
      f"{np.median(rel):.2e}, max {max(rel):.2e}")
PY
"$PY" benchmarks/forward.py --devices cuda --durations 2 10 30 --batches 1 8 --repeats 3 2>&1 | tee "$OUT/forward.txt"

step "2/4 URDU extraction against FunASR on the GPU"
"$PY" benchmarks/extract.py --device cuda --repeats 1 --accuracy-files 100 2>&1 | grep -v '^# round' | tee "$OUT/extract.txt"

step "3/4 pretraining step against fairseq's data2vec 2.0 on the GPU"
"$PY" benchmarks/pretrain_step.py --device cuda --geometries base --dtypes float32 bfloat16 float16 \
    --peer-dtypes float32 bfloat16 float16 --steps 5 --repeats 1 --curve-updates 0 2>&1 | grep -v '^# round' \
    | tee "$OUT/pretrain_step.txt"

step "4/4 fairseq-hydra-train, base config, fp16, 20 updates"
"$PY" -m emotion2vec manifest "$SHARED/data/urdu" --out "$OUT/manifest" --resample-to "$OUT/urdu16k" >/dev/null
USER_DIR=$("$PY" -c "import emotion2vec; print(emotion2vec.fairseq_user_dir())")
"$PY" -m fairseq_cli.hydra_train --config-dir configs --config-name emotion2vec_base \
    task.data="$OUT/manifest" common.user_dir="$USER_DIR" model.init_from=null common.fp16=true \
    distributed_training.distributed_world_size=1 'optimization.update_freq=[1]' optimization.max_update=20 \
    lr_scheduler.warmup_updates=5 common.log_interval=1 checkpoint.no_save=true \
    checkpoint.save_dir="$OUT/fairseq_run" > "$OUT/fairseq_fp16.log" 2>&1
"$PY" - "$OUT/fairseq_fp16.log" <<'PY'
import math, re, sys
text = open(sys.argv[1]).read()
losses = [float(v) for v in re.findall(r"\bloss=([-\d.e+naif]+)", text)]
finite = all(math.isfinite(v) for v in losses)
print(f"fairseq-hydra-train fp16: {len(losses)} logged losses, first {losses[:1]}, last {losses[-1:]}; "
      f"{'all finite' if losses and finite else 'FAIL: missing or non-finite losses'}")
sys.exit(0 if losses and finite else 1)
PY

echo; echo "done in $(( $(date +%s) - start )) s; outputs in $OUT/"
