#!/usr/bin/env bash
# Build .device/ (git-ignored) on the development machine: everything bench.sh needs on the GPU
# machine that is not in the repo. Carry it with `run` (carry: [".device"]); ~31 MiB.
#   benchmarks/gpu/prepare_device_dir.sh [SD_SCRIPTS_CHECKOUT]    (default /work/ext/sd-scripts)
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${1:-/work/ext/sd-scripts}
D=.device
mkdir -p "$D/whl"
PLAT=""
for p in manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do PLAT="$PLAT --platform $p"; done
PIP="python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT"
# sd-scripts' pins that the device image (transformers 5, accelerate 1.15, safetensors 0.8) lacks;
# our check_environment refuses to train when accelerate/safetensors differ from the pins.
$PIP -d "$D/whl" transformers==4.54.1 'tokenizers>=0.21,<0.22' huggingface-hub==0.34.3 diffusers==0.32.1 \
  accelerate==1.6.0 safetensors==0.4.5 imagesize==1.4.1 toml==0.10.2 voluptuous==0.15.2 importlib_metadata
# bitsandbytes (AdamW8bit of the 12/8 presets): 43 MB wheel; keep only the CUDA 13.0 + CPU libraries (4.5 MB).
rm -rf "$D/bnb" /tmp/mvic-bnb && mkdir -p "$D/bnb" /tmp/mvic-bnb
$PIP -d /tmp/mvic-bnb bitsandbytes==0.50.2
(cd "$D/bnb" && unzip -q /tmp/mvic-bnb/bitsandbytes-*.whl)
find "$D/bnb/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name '*cuda130*' ! -name '*cpu*' -delete
# sd-scripts without .git, docs, configs, tests (4 MB).
rm -rf "$D/sd-scripts" && mkdir -p "$D/sd-scripts"
(cd "$SRC" && tar cf - --exclude=./docs --exclude=./configs --exclude=./tests --exclude=./.git --exclude=__pycache__ .) | tar xf - -C "$D/sd-scripts"
# Fallback dataset (bench.sh builds its own with `python -m mvic demo` and uses this only if that fails).
PYBIN=$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)
rm -rf "$D/ds" && $PYBIN -m mvic demo --out "$D/ds" --panel 512x512 >/dev/null || echo "no fallback dataset (mvic demo failed here)"
du -sh "$D"
