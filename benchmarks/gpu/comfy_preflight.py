"""Make ComfyUI's requirements importable on the GPU machine (no network there).

    python benchmarks/gpu/comfy_preflight.py WHEEL_DIR TARGET

For every wheel in WHEEL_DIR whose module the device's Python cannot import, install it with
`pip install --no-index --no-deps --target TARGET`; packages the image already has stay as they
are (a second copy on the path could shadow a newer one that other packages need). Prints what
was missing and exits 1 if something in COMFY_NEEDS still does not import afterwards (put TARGET
on PYTHONPATH, plus benchmarks/gpu/stubs when PyAV is reported missing).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

# wheel distribution name -> import name, where they differ
IMPORT_NAME = {"python_dotenv": "dotenv", "pyyaml": "yaml", "attrs": "attr"}
# imported by ComfyUI at start-up or when sampling FLUX (av: see benchmarks/gpu/stubs/av)
COMFY_NEEDS = [
    "torch",
    "torchvision",
    "numpy",
    "PIL",
    "safetensors",
    "transformers",
    "tokenizers",
    "sentencepiece",
    "einops",
    "torchsde",
    "aiohttp",
    "yarl",
    "yaml",
    "scipy",
    "tqdm",
    "psutil",
    "pydantic",
    "requests",
]


def missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def main() -> int:
    wheels, target = Path(sys.argv[1]), Path(sys.argv[2])
    to_install = []
    for wheel in sorted(wheels.glob("*.whl")):
        dist = wheel.name.split("-")[0].lower()
        module = IMPORT_NAME.get(dist, dist)
        if missing(module):
            to_install.append(wheel)
    print("preflight: installing", [w.name.split("-")[0] for w in to_install] or "nothing", flush=True)
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        str(target),
    ]
    if to_install and subprocess.run(pip + [str(w) for w in to_install]).returncode != 0:
        for wheel in to_install:  # one by one: a wheel for another Python must not block the rest
            if subprocess.run(pip + [str(wheel)]).returncode != 0:
                print(f"preflight: could not install {wheel.name}")
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    still = [name for name in COMFY_NEEDS if missing(name)]
    print("preflight: av", "present" if not missing("av") else "MISSING (use benchmarks/gpu/stubs)")
    print(
        "preflight: comfy_kitchen",
        "present" if not missing("comfy_kitchen") else "missing (ComfyUI falls back to its own rope/fp8 code)",
    )
    if still:
        print("preflight: still missing:", still)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
