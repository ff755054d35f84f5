"""Stage 3: one marker caption per composite (entry point: `captioner.caption_composites`).

text.py: the caption text codec, caption text <-> (trigger, prefix, summary, panel
texts), validated against the layout's markers (the saver, trainer and sampler use it). annotation: the structured
answer a vision model
gives (pydantic) and the caption we render from it. backends/: gemini and
openai-compatible behind one interface; template.py is the offline backend.
retry, ratelimit, cache, jobs: how a model run stays cheap and robust.
"""
