#!/usr/bin/env bash
# Issue 13's GPU measurements (FP8 matmuls, memory presets, quality guard), one device call each,
# on one H200 kept warm between calls (models, caches and the first runs' LoRAs stay on its disk).
#   bash benchmarks/gpu/fp8_session.sh call1|call2|call3
# Run from the repo root (or a snapshot of it); MVIC_DEVICE_DIR: the carried .device folder (bench.sh).
set -u
START=$(date +%s)
OUT=${OUT:-/tmp/mvic-fp8-out}
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1 TORCH_LOGS=recompiles  # a recompiling block would show in train.log
W=/tmp/mvic-bench
if [ -d "$HOME/mvic-bench/models" ] || { [ ! -d /tmp/mvic-bench/models ] && [ "$(df -Pk /tmp | awk 'NR==2{print $4}')" -lt 45000000 ]; }; then
  W=$HOME/mvic-bench
fi
export MVIC_BENCH_WORK=$W
left() { echo $(( ${1} - ($(date +%s) - START) )); }

case ${1:-} in
  call1)  # FP8 linear on the GPU, then the 300-step FP8 run (compiled) and the plain sd-scripts baseline
    timeout 200 python3 benchmarks/gpu/fp8_check.py --json "$OUT/fp8_check.json" || { echo "fp8_check FAILED: no training runs"; exit 1; }
    MVIC_BENCH_DEADLINE=$(left 560) bash benchmarks/gpu/bench.sh \
      'fp8c|80|300|0||fp8=on compile=on losslog' 'base|sdscripts|40|0||'
    ;;
  call2)  # the 300-step bf16 run (compiled, same seed), the quality guard, the FP8 run warm, presets 8 and 12 capped
    MVIC_BENCH_DEADLINE=$(left 520) bash benchmarks/gpu/bench.sh \
      'bf16c|80|300|0||fp8=off compile=on losslog' 'fp8w|80|30|0||fp8=on compile=on' '8cap|8|8|0||memcap=7' '12cap|12|8|0||memcap=11'
    python3 benchmarks/gpu/compare_runs.py --losses "$W/results/bf16c/losses.txt" "$W/results/fp8c/losses.txt" \
      --loras "$W/runs/bf16c/output/attempt1/bf16c.safetensors" "$W/runs/fp8c/output/attempt1/fp8c.safetensors" --json "$OUT/quality.json"
    ;;
  call3)  # 24 preset: FP8 compiled and eager under a 23 GiB cap, the plain sd-scripts 24 switches; 16 capped
    MVIC_BENCH_DEADLINE=$(left 560) bash benchmarks/gpu/bench.sh \
      '24c|24|60|0||fp8=on compile=on memcap=23' '16cap|16|8|0||memcap=15' '24e|24|40|0||fp8=on compile=off' \
      'base24|sdscripts|40|0|--fp8_base --gradient_checkpointing|'
    ;;
  *) echo "usage: $0 call1|call2|call3"; exit 2 ;;
esac
echo "== session $1 done ($(($(date +%s) - START)) s)"
