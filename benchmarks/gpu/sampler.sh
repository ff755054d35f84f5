#!/usr/bin/env bash
# GPU benchmark of ICLoRASampler vs the same graph of core ComfyUI nodes (issue 5, acceptance 4).
# Run from the repo root on the GPU machine, after bench.sh in the same call (it reuses bench.sh's
# models and the LoRA its trainer run wrote), or alone (then it makes the models and a random LoRA).
#   benchmarks/gpu/sampler.sh [--size 1024 --steps 20 --repeats 6 ...]   (extra args: bench_sampler.py)
# Needs .device/comfy (prepare_device_dir.sh SD_SCRIPTS COMFYUI). Writes $OUT/sampler.json, $OUT/sampler.log.
set -u
ROOT=$(pwd)
DEV=${MVIC_DEVICE_DIR:-$ROOT/.device}
W=${MVIC_BENCH_WORK:-}
if [ -z "$W" ]; then
  W=/tmp/mvic-bench
  if [ -d "$HOME/mvic-bench/models" ]; then W=$HOME/mvic-bench
  elif [ ! -d /tmp/mvic-bench/models ] && [ "$(df -Pk /tmp | awk 'NR==2{print $4}')" -lt 45000000 ]; then W=$HOME/mvic-bench
  fi
fi
OUT=${OUT:-$W/out}
PY=${MVIC_BENCH_PYTHON:-$(command -v python3)}
MODELS=${MVIC_BENCH_MODELS:-$W/models}
FLUX=${MVIC_BENCH_FLUX:-$MODELS/random-flux1-dev-full-bf16.safetensors}
mkdir -p "$W" "$OUT"
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
echo "== sampler benchmark: work $W"
$PY benchmarks/gpu/comfy_preflight.py "$DEV/comfy/whl" "$W/comfy-site" 2>&1 | tee "$OUT/sampler.log"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "preflight failed: ComfyUI's requirements are not importable"; exit 1; }
export PYTHONPATH=$W/comfy-site
$PY -c "import av" 2>/dev/null || export PYTHONPATH=$PYTHONPATH:$ROOT/benchmarks/gpu/stubs
if [ -z "${MVIC_BENCH_MODELS:-}" ]; then
  $PY benchmarks/gpu/make_models.py "$MODELS" || { echo "model generation failed"; exit 1; }
fi
LORA=$(find "$W/loras" -name '*.safetensors' -printf '%T@ %p\n' 2>/dev/null | sort -n | tail -1 | cut -d' ' -f2-)
LORA_ARGS=(--lora "$LORA")
[ -n "$LORA" ] || LORA_ARGS=(--random-lora "$W/random-lora-r16.safetensors")
echo "LoRA: ${LORA:-random rank 16}"
$PY benchmarks/gpu/bench_sampler.py --comfyui "$DEV/comfy/ComfyUI" --flux "$FLUX" \
  --clip-l "$MODELS/random-clip-l-fp16-v1.safetensors" --t5xxl "$MODELS/zero-t5xxl-fp16-v1.safetensors" \
  --ae "$MODELS/random-flux-ae-fp32-v1.safetensors" "${LORA_ARGS[@]}" --work "$W/sampler" --out "$OUT/sampler.json" "$@" 2>&1 | tee -a "$OUT/sampler.log"
rc=${PIPESTATUS[0]}
cp "$W/sampler/comfyui.log" "$OUT/sampler-comfyui.log" 2>/dev/null
exit "$rc"
