"""Stage 5: train the IC-LoRA with kohya sd-scripts, always as a subprocess in sd-scripts'
own Python environment (its pins clash with ComfyUI's). This package runs on the
ComfyUI side; the scripts under the pack's `trainers/` run inside sd-scripts' Python."""
