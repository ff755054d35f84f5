"""Run by ComfyUI's Python: apply a LoRA to a FLUX model the way LoraLoaderModelOnly does
and report how many LoRA keys found a weight. Usage: python lora_check_comfyui.py COMFYUI_DIR FLUX LORA"""

import json
import logging
import sys

comfy_dir, flux_path, lora_path = sys.argv[1:4]
sys.argv = [sys.argv[0], "--cpu"]  # comfy.cli_args reads sys.argv at import
sys.path.insert(0, comfy_dir)
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()  # else cli_args ignores sys.argv
import comfy.lora  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402

unmatched = []


class Catch(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if "lora key not loaded" in message:
            unmatched.append(message.split(":", 1)[1].strip())


logging.getLogger().addHandler(Catch())
model = comfy.sd.load_diffusion_model(flux_path)
key_map = comfy.lora.model_lora_keys_unet(model.model, {})
lora = comfy.utils.load_torch_file(lora_path, safe_load=True)
patches = comfy.lora.load_lora(lora, key_map)
modules = sorted({k.split(".")[0] for k in lora})
print("RESULT " + json.dumps({"modules": len(modules), "patched_weights": len(patches), "unmatched": unmatched}))
