#!/usr/bin/env bash
# Build .device/ (git-ignored) on the development machine: everything bench.sh needs on the GPU
# machine that is not in the repo. Carry it with `run` (carry: [".device"]); ~31 MiB, ~55 with ComfyUI.
#   benchmarks/gpu/prepare_device_dir.sh [SD_SCRIPTS_CHECKOUT [COMFYUI_CHECKOUT]]
#   (defaults /work/ext/sd-scripts; ComfyUI only when given: for sampler.sh)
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
rm -rf "$D/ds"  # bench.sh builds its dataset on the device with `python -m mvic demo`
# ComfyUI (sampler benchmark): the checkout without tests, plus wheels of its requirements that the
# device image may lack; comfy_preflight.py installs there only what does not import. Left out:
# scipy (the image has it), av (35 MB; benchmarks/gpu/stubs/av stands in), comfy-kitchen (68 MB,
# optional: ComfyUI falls back to its own code), the frontend (served from an empty folder).
if [ -n "${2:-}" ]; then
  rm -rf "$D/comfy" && mkdir -p "$D/comfy/ComfyUI" "$D/comfy/whl"
  (cd "$2" && tar cf - --exclude=./tests --exclude=./tests-unit --exclude=./.git --exclude=./.github --exclude=__pycache__ \
     --exclude=./custom_nodes --exclude=./models --exclude=./output --exclude=./input --exclude=./user .) | tar xf - -C "$D/comfy/ComfyUI"
  mkdir -p "$D/comfy/ComfyUI/custom_nodes" "$D/comfy/ComfyUI/models"
  # tokenizer data of model families FLUX does not use (read only when such a model loads): 5 MB
  rm -rf "$D"/comfy/ComfyUI/comfy/text_encoders/{qwen25,ace_lyrics,hydit_clip,t5_pile}_tokenizer
  $PIP -d "$D/comfy/whl" aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 alembic==1.20.1 annotated-types==0.8.0 attrs==26.1.0 \
    einops==0.8.2 frozenlist==1.8.0 idna==3.20 Mako==1.4.3 MarkupSafe==3.0.4 multidict==7.2.1 propcache==0.5.4 psutil==7.2.2 \
    pydantic==2.14.4 pydantic-settings==2.16.3 pydantic_core==2.50.5 python-dotenv==1.2.4 PyYAML==6.0.4 requests==2.34.2 \
    SQLAlchemy==2.1.9 greenlet==3.5.6 torchsde==0.2.6 tqdm==4.70.1 trampoline==0.1.2 typing-inspection==0.4.5 \
    typing_extensions==4.16.0 yarl==1.25.1
fi
du -sh "$D" "$D"/*
