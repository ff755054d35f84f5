"""Print, as JSON, what the sd-scripts environment has: versions of the packages sd-scripts
pins, whether the checkout's FLUX trainer parser loads, and the GPUs torch sees.

Usage: python probe_env.py SD_SCRIPTS_DIR [--no-parser]"""

import importlib
import json
import os
import sys

checkout = sys.argv[1]
report = {"python": sys.version.split()[0], "packages": {}, "files": {}, "parser": None, "gpus": []}
for name in ("torch", "transformers", "diffusers", "accelerate", "safetensors", "bitsandbytes"):
    try:
        report["packages"][name] = importlib.import_module(name).__version__
    except Exception as exc:  # noqa: BLE001 - any import failure is a finding to report
        report["packages"][name] = None
        report.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"[:300]
for rel in ("flux_train_network.py", "networks/lora_flux.py", "library/flux_utils.py"):
    report["files"][rel] = os.path.isfile(os.path.join(checkout, rel))
if all(report["files"].values()) and "--no-parser" not in sys.argv:
    os.chdir(checkout)
    sys.path.insert(0, checkout)
    try:
        import flux_train_network

        flux_train_network.setup_parser()
        report["parser"] = "ok"
    except Exception as exc:  # noqa: BLE001
        report["parser"] = f"{type(exc).__name__}: {exc}"[:500]
try:
    import torch

    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            report["gpus"].append(
                {
                    "index": i,
                    "name": props.name,
                    "total_gib": round(props.total_memory / 2**30, 2),
                    "capability": f"{props.major}.{props.minor}",
                }
            )
except Exception:  # noqa: BLE001
    pass
print("MVIC_PROBE " + json.dumps(report))
