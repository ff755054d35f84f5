"""Stage 6: what the sampler decides before touching a model — layout, prompt, shift,
reference placement — kept ComfyUI-free so tests reach all of it."""
