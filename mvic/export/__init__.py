"""Stage 4: write the IC-LoRA training set (images, captions, manifest, trainer configs)."""
