"""Trainer configs written beside the dataset: sd-scripts' dataset TOML and an
ai-toolkit YAML derived from the public pipeline's `config_4views.yaml`."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

DEFAULT_BASE_MODEL = "black-forest-labs/FLUX.1-dev"


def _toml_string(value: str) -> str:
    """A TOML 1.0 basic string. JSON's escapes are TOML's, except that TOML also forbids a raw
    DEL (U+007F), which JSON leaves as it is. Text that is not UTF-8 cannot be written at all."""
    value.encode("utf-8")  # raises on lone surrogates (a non-UTF-8 file name): callers check first
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def sd_scripts_dataset_toml(image_dir: Path, width: int, height: int, num_repeats: int = 1, batch_size: int = 1) -> str:
    """Absolute image_dir: sd-scripts resolves relative paths from its own working directory.
    Fixed-size composites: no bucketing, resolution = composite size."""
    return "\n".join(
        [
            "# Written by ComfyUI-MultiView-ICLoRA. sd-scripts: --dataset_config this_file",
            "[general]",
            "shuffle_caption = false",
            'caption_extension = ".txt"',
            "keep_tokens = 0",
            "",
            "[[datasets]]",
            f"resolution = [{width}, {height}]",
            f"batch_size = {batch_size}",
            "enable_bucket = false",
            "",
            "  [[datasets.subsets]]",
            f"  image_dir = {_toml_string(str(image_dir.resolve()))}",
            '  caption_extension = ".txt"',
            f"  num_repeats = {num_repeats}",
            "",
        ]
    )


def ai_toolkit_yaml(
    image_dir: Path, name: str, base_model: str = DEFAULT_BASE_MODEL, sample_prompts: list[str] | None = None
) -> str:
    """The reference config with its training choices kept; only the run name, the
    dataset folder, the base model and the sample prompts are ours."""
    import yaml

    text = resources.files(__package__).joinpath("ai_toolkit_4views.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    config["config"]["name"] = name
    config["meta"]["name"] = name
    process = config["config"]["process"][0]
    process["datasets"][0]["folder_path"] = str(image_dir.resolve())
    process["model"]["name_or_path"] = base_model or DEFAULT_BASE_MODEL
    if sample_prompts:
        process["sample"]["prompts"] = list(sample_prompts)
    header = "# Written by ComfyUI-MultiView-ICLoRA from the public IC-LoRA 4-views ai-toolkit config (Apache-2.0).\n"
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=1000)
