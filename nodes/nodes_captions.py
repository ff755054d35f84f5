"""GeminiCaptioner: structured marker captions for every composite (mvic.captions.captioner).

The API key is never a widget: widget values are saved in every workflow JSON and
PNG. Keys come from GEMINI_API_KEY / GOOGLE_API_KEY / OPENAI_API_KEY or from a key
file whose *path* is the widget.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..mvic.captions.backends.base import BACKENDS, DEFAULT_MODELS, KEY_ENV_VARS
from ..mvic.captions.prompt import INPUT_MODES, PROMPT_VERSION
from .comfy_io import Progress, _folder_paths, check_interrupt

def _key_file_path(key_file: str) -> str:
    """The key file as given (relative to ComfyUI's working folder), refused inside the
    folders ComfyUI serves over HTTP (/view reads input, output and temp)."""
    text = key_file.strip()
    if not text:
        return ""
    path = Path(text).expanduser().resolve()
    fp = _folder_paths()
    if fp is not None:
        for getter in ("get_input_directory", "get_output_directory", "get_temp_directory"):
            served = Path(getattr(fp, getter)()).resolve()
            if path == served or served in path.parents:
                raise ValueError(
                    f"key file {path} is inside ComfyUI's {getter[4:-10]} folder, which ComfyUI serves over HTTP; "
                    "move it elsewhere (e.g. ~/.config/mvic/gemini.key)"
                )
    return str(path)


def _fingerprint(settings: dict) -> str:
    """What can change the output besides the linked composites: the widgets, the prompt
    version, and which key is in use (the key file's mtime, whether an env key is set;
    never the key itself)."""
    key_file = str(settings.get("key_file", "")).strip()
    try:
        key_stamp = os.stat(Path(key_file).expanduser()).st_mtime_ns if key_file else None
    except OSError:
        key_stamp = "missing"
    env_keys = [name for names in KEY_ENV_VARS.values() for name in names if os.environ.get(name)]
    inputs = GeminiCaptioner.INPUT_TYPES()
    widgets = {**inputs["required"], **inputs["optional"]}
    # A widget ComfyUI did not pass counts as its default, as it does for the node's function.
    state = {name: settings.get(name, spec[1]["default"]) for name, spec in widgets.items() if name != "composites"}
    state.update(prompt_version=PROMPT_VERSION, key_stamp=key_stamp, env_keys=env_keys)
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


class GeminiCaptioner:
    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = (
        "Marker captions for every composite: template (offline, no key), Gemini, or an OpenAI-compatible server "
        "(Ollama, vLLM, LM Studio, OpenAI). Keys come from GEMINI_API_KEY / GOOGLE_API_KEY / OPENAI_API_KEY or a key file."
    )
    RETURN_TYPES = ("MV_COMPOSITES", "STRING")
    RETURN_NAMES = ("composites", "report")
    FUNCTION = "caption"

    # Fingerprints whose last run left composites on the template fallback: run those again.
    _needs_retry: set[str] = set()

    @classmethod
    def INPUT_TYPES(cls):
        models = ", ".join(f"{b}: {m}" for b, m in DEFAULT_MODELS.items())
        return {
            "required": {
                "composites": ("MV_COMPOSITES",),
                "backend": (list(BACKENDS), {"default": "template", "tooltip": "template: offline, from category and poses"}),
                "model": ("STRING", {"default": "", "tooltip": f"empty = default ({models})"}),
            },
            "optional": {
                "base_url": ("STRING", {"default": "", "tooltip": "empty = the provider's; e.g. http://127.0.0.1:11434/v1 for Ollama"}),
                "key_file": ("STRING", {"default": "", "tooltip": "path of a file holding only the API key (keep it outside ComfyUI's input/output folders); empty = environment variable"}),
                "trigger": ("STRING", {"default": "", "tooltip": "word put before every caption"}),
                "concurrency": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": "requests in flight at once"}),
                "rpm": ("INT", {"default": 10, "min": 0, "max": 100000, "tooltip": "requests per minute; free Gemini keys allow about 10; 0 = no cap"}),
                "appearance_only": ("BOOLEAN", {"default": False, "tooltip": "no pose words for panels the model is unsure about"}),
                "input_mode": (list(INPUT_MODES), {"default": "composite", "tooltip": "send the composite, or each view as its own image"}),
                "cache_dir": ("STRING", {"default": "", "tooltip": "empty = ~/.cache/mvic/captions; re-runs never ask again for a captioned composite"}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, **inputs):
        fingerprint = _fingerprint(inputs)
        if fingerprint in cls._needs_retry:
            return float("nan")  # never equal: retry the failed composites (the others come from the cache)
        return fingerprint

    def caption(self, composites, backend, model, base_url="", key_file="", trigger="", concurrency=4, rpm=10,
                appearance_only=False, input_mode="composite", cache_dir=""):
        from ..mvic.captions.captioner import CaptionSettings, caption_composites

        settings = CaptionSettings(
            backend=backend, model=model.strip(), base_url=base_url.strip(), key_file=_key_file_path(key_file),
            trigger=trigger, concurrency=concurrency, rpm=rpm, appearance_only=appearance_only,
            input_mode=input_mode, cache_dir=cache_dir.strip(),
        )
        progress = Progress(len(composites.items))

        def on_progress(done: int, total: int) -> None:
            progress(done, total)
            check_interrupt()

        captioned, report = caption_composites(composites, settings, on_progress)
        fingerprint = _fingerprint({
            "backend": backend, "model": model, "base_url": base_url, "key_file": key_file, "trigger": trigger,
            "concurrency": concurrency, "rpm": rpm, "appearance_only": appearance_only, "input_mode": input_mode, "cache_dir": cache_dir,
        })
        (self._needs_retry.add if report.failures else self._needs_retry.discard)(fingerprint)
        return (captioned, report.text())


NODE_CLASS_MAPPINGS = {"MVIC_GeminiCaptioner": GeminiCaptioner}
NODE_DISPLAY_NAME_MAPPINGS = {"MVIC_GeminiCaptioner": "GeminiCaptioner"}
