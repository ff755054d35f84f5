#!/usr/bin/env bash
# GPU benchmark of our trainer (`python -m mvic train`) on full-size random FLUX.1-dev geometry.
#
# Run from the repo root on the GPU machine (every call: the machine starts bare):
#   benchmarks/gpu/bench.sh 'RUN' ['RUN' ...]
# RUN = name|preset|steps|save_every|extra sd-scripts args|options
#   preset   one of our presets (80 48 24 16 12 8), or "sdscripts" = the issue's plain sd-scripts command
#   options  space-separated: memcap=GIB (cap the child's CUDA memory through memcap/sitecustomize.py,
#            to provoke a real out-of-memory error); profile=START:COUNT (torch.profiler over steps
#            START+1..START+COUNT through profile/sitecustomize.py; writes profile.txt to the run's results);
#            fp8=auto|on|off and compile=auto|on|off (our trainer's --fp8-matmul / --compile);
#            losslog (every step's loss to the run's losses.txt through losslog/sitecustomize.py)
# Needs, carried under .device/ (git-ignored):
#   whl/         overlay wheels: transformers 4.54.1, tokenizers 0.21.4, huggingface-hub 0.34.3,
#                diffusers 0.32.1, accelerate 1.6.0, safetensors 0.4.5, imagesize, toml, voluptuous,
#                importlib_metadata
#   bnb/         bitsandbytes 0.50.2 unpacked, only libbitsandbytes_cuda130.so + _cpu.so kept
#   sd-scripts/  copy of the sd-scripts checkout (no .git, docs, configs, tests)
# Environment: MVIC_BENCH_WORK (default /tmp/mvic-bench), MVIC_BENCH_DEADLINE (seconds from start
# after which no run is started and a running one is stopped; default 560), OUT (results folder).
# Writes $OUT/results.tgz (per run: console.ts, train.ts, train.log, smi.csv, end) and
# $OUT/summary.jsonl; prints the table last.
set -u
START=$(date +%s)
ROOT=$(pwd)
DEV=${MVIC_DEVICE_DIR:-$ROOT/.device}
if [ -z "${MVIC_BENCH_WORK:-}" ]; then  # the 24 GB FLUX file needs a roomy disk
  # (on a warm machine reuse whichever folder already holds the models: don't regenerate them)
  MVIC_BENCH_WORK=/tmp/mvic-bench
  if [ -d "$HOME/mvic-bench/models" ]; then MVIC_BENCH_WORK=$HOME/mvic-bench
  elif [ ! -d /tmp/mvic-bench/models ] && [ "$(df -Pk /tmp | awk 'NR==2{print $4}')" -lt 45000000 ]; then MVIC_BENCH_WORK=$HOME/mvic-bench
  fi
fi
W=$MVIC_BENCH_WORK
DEADLINE=${MVIC_BENCH_DEADLINE:-560}
OUT=${OUT:-$W/out}
RES=$W/results
PY=${MVIC_BENCH_PYTHON:-$(command -v python3)}
MODELS=${MVIC_BENCH_MODELS:-$W/models}
FLUX=${MVIC_BENCH_FLUX:-$MODELS/random-flux1-dev-full-bf16.safetensors}
CLIP=$MODELS/random-clip-l-fp16-v1.safetensors
AE=$MODELS/random-flux-ae-fp32-v1.safetensors
T5=$MODELS/zero-t5xxl-fp16-v1.safetensors
PANEL=${MVIC_BENCH_PANEL:-512x512}
mkdir -p "$W" "$RES" "$OUT"
export SD_SCRIPTS_PYTHON=${SD_SCRIPTS_PYTHON:-$PY} SD_SCRIPTS_DIR=$DEV/sd-scripts HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export SD_SCRIPTS_PYTHONPATH=${SD_SCRIPTS_PYTHONPATH-$W/site}
export NCCL_NVLS_ENABLE=0

left() { echo $(( DEADLINE - ($(date +%s) - START) )); }

setup() {
  echo "== setup ($(($(date +%s) - START)) s)"
  nvidia-smi -L 2>/dev/null; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
  df -h "$W" | tail -1; free -g | head -2
  if [ -n "$SD_SCRIPTS_PYTHONPATH" ] && [ ! -f "$W/site/.done" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$W/site" "$DEV"/whl/*.whl \
      && cp -r "$DEV"/bnb/* "$W/site/" && touch "$W/site/.done" || echo "SETUP: overlay install failed"
  fi
  PYTHONPATH=$SD_SCRIPTS_PYTHONPATH $PY -c "import torch, transformers, diffusers, accelerate, safetensors; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__, 'accelerate', accelerate.__version__, 'safetensors', safetensors.__version__)"
  PYTHONPATH=$SD_SCRIPTS_PYTHONPATH $PY -c "import bitsandbytes, torch; print('bitsandbytes', bitsandbytes.__version__); bitsandbytes.optim.AdamW8bit([torch.nn.Parameter(torch.zeros(4096, device='cuda'))])" 2>&1 | tail -2
  if [ -z "${MVIC_BENCH_MODELS:-}" ]; then
    $PY benchmarks/gpu/make_models.py "$MODELS" || echo "SETUP: model generation failed"
  fi
  if [ ! -f "$W/ds/dataset.toml" ]; then
    $PY -m mvic demo --out "$W/ds" --panel "$PANEL" >/dev/null || echo "SETUP: mvic demo failed"
    sed -i -E "s/num_repeats = [0-9]+/num_repeats = 10/; s#image_dir = .*#image_dir = \"$W/ds/images\"#" "$W/ds/dataset.toml"
  fi
  ls "$W/ds/images" | grep -c '\.png$' | sed 's/^/dataset images: /'
  echo "== setup done ($(($(date +%s) - START)) s)"
}

run_one() {
  local spec=$1 name preset steps save extra opts
  IFS='|' read -r name preset steps save extra opts <<<"$spec"
  local dir=$RES/$name remaining
  remaining=$(left)
  if [ "$remaining" -lt 60 ]; then echo "SKIP $name: ${remaining}s left"; return; fi
  echo "== $name: preset $preset, $steps steps, extra '$extra', options '$opts' (${remaining}s left)"
  rm -rf "$dir" "$W/runs/$name"; mkdir -p "$dir" "$W/runs/$name"
  rm -f "$W"/ds/images/*.npz "$W/ds/.mvic_cache_state.json"   # cold caches: start-up includes caching
  local runenv=(env) trainer=()
  for opt in $opts; do
    case $opt in
      memcap=*) runenv+=("MVIC_BENCH_CAP_GIB=${opt#memcap=}" "SD_SCRIPTS_PYTHONPATH=$SD_SCRIPTS_PYTHONPATH:$ROOT/benchmarks/gpu/memcap") ;;
      profile=*) runenv+=("MVIC_BENCH_PROFILE=${opt#profile=}:$dir" "SD_SCRIPTS_PYTHONPATH=$SD_SCRIPTS_PYTHONPATH:$ROOT/benchmarks/gpu/profile") ;;
      losslog) runenv+=("MVIC_BENCH_LOSSLOG=$dir/losses.txt" "SD_SCRIPTS_PYTHONPATH=$SD_SCRIPTS_PYTHONPATH:$ROOT/benchmarks/gpu/losslog") ;;
      fp8=*) trainer+=(--fp8-matmul "${opt#fp8=}") ;;
      compile=*) trainer+=(--compile "${opt#compile=}") ;;
    esac
  done
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 250 >"$dir/smi.csv" 2>/dev/null &
  local smi=$!
  local t0 rc follow
  t0=$(date +%s.%N)
  if [ "$preset" = sdscripts ]; then
    # The issue's plain sd-scripts command (baseline), + the offline tokenizers and our step count.
    (cd "$DEV/sd-scripts" && timeout -s TERM "$remaining" "${runenv[@]}" PYTHONPATH="$SD_SCRIPTS_PYTHONPATH" HF_HUB_OFFLINE=1 COLUMNS=200 \
      $SD_SCRIPTS_PYTHON flux_train_network.py --pretrained_model_name_or_path "$FLUX" --clip_l "$CLIP" --t5xxl "$T5" --ae "$AE" \
      --dataset_config "$W/ds/dataset.toml" --output_dir "$W/runs/$name" --output_name "$name" \
      --network_module networks.lora_flux --network_dim 16 --network_alpha 16 --network_train_unet_only \
      --optimizer_type AdamW --learning_rate 1e-4 --mixed_precision bf16 --save_precision bf16 \
      --cache_latents_to_disk --cache_text_encoder_outputs_to_disk --timestep_sampling shift --discrete_flow_shift 3.1582 \
      --model_prediction_type raw --guidance_scale 1.0 --no_metadata --max_train_steps "$steps" \
      --tokenizer_cache_dir "$ROOT/trainers/tokenizers" $extra 2>&1) | $PY benchmarks/gpu/tstamp.py "$t0" >"$dir/console.ts"
    rc=${PIPESTATUS[0]}
  else
    $PY benchmarks/gpu/tstamp.py "$t0" --follow "$W/runs/$name/train.log" >"$dir/train.ts" &
    follow=$!
    timeout -s TERM "$remaining" "${runenv[@]}" $PY benchmarks/gpu/mvic_train.py train --dataset "$W/ds" --flux "$FLUX" --clip-l "$CLIP" --t5xxl "$T5" --ae "$AE" \
      --name "$name" --steps "$steps" --preset "$preset" --save-every "$save" --extra-args "$extra" \
      --sd-scripts "$DEV/sd-scripts" --loras-dir "$W/loras" --run-dir "$W/runs/$name" "${trainer[@]}" 2>&1 \
      | $PY benchmarks/gpu/tstamp.py "$t0" >"$dir/console.ts"
    rc=${PIPESTATUS[0]}
    sleep 0.3; kill "$follow" 2>/dev/null; wait "$follow" 2>/dev/null
  fi
  python3 -c "import time; print(round(time.time() - $t0, 3))" >"$dir/end"
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  cp "$W/runs/$name/train.log" "$dir/" 2>/dev/null
  local to=60; [ "$steps" -lt 60 ] && to=$steps
  $PY benchmarks/gpu/parse.py "$dir" --name "$name" --preset "$preset" --extra "$extra $opts" --rc "$rc" --to "$to" | tee -a "$RES/summary.jsonl"
  if [ "$steps" -gt 60 ]; then
    $PY benchmarks/gpu/parse.py "$dir" --name "$name-10to$steps" --preset "$preset" --extra "$extra $opts" --rc "$rc" --to "$steps" | tee -a "$RES/summary.jsonl"
  fi
  tail -c 1500 "$dir/console.ts" | cut -f2- | tail -4
}

setup
for spec in "$@"; do run_one "$spec"; done
cp "$RES/summary.jsonl" "$OUT/" 2>/dev/null
tar czf "$OUT/results.tgz" -C "$RES" . 2>/dev/null
echo "== done ($(($(date +%s) - START)) s)"
$PY benchmarks/gpu/parse.py --table "$RES/summary.jsonl"
