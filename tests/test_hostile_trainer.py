"""Hostile workflows against the trainer and the sampler's LoRA inputs, through a real ComfyUI's
/prompt (issue 9, acceptance 1 and 3).

The workflows are the shipped API files with the hostile values put in. This machine's local
settings (written with `python -m mvic config add-trainer`, as a user would) know two sd-scripts
stand-ins whose every program writes a SENTINEL file: "sentinel" (intact) and "tampered" (its
library/ changed after it was registered). The server has the user's API keys in its environment
and no SD_SCRIPTS_DIR. After each case: no sentinel ran, a loopback listener got no request,
nothing appeared, changed or vanished outside the server's output/models folders, and the refusal
names the input and how to allow it locally.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from comfy_harness import ComfyServer, comfyui_paths
from hostile import FileScan, Listener, refusal, sentinel_checkout
from packload import ROOT
from trainer_data import mvic_cli, small_dataset

SECRETS = {"GEMINI_API_KEY": "sk-hostile-test-gemini", "OPENAI_API_KEY": "sk-hostile-test-openai"}
PLACEHOLDER_MODELS = (
    "diffusion_models/flux1-dev.safetensors",
    "text_encoders/clip_l.safetensors",
    "text_encoders/t5xxl_fp16.safetensors",
    "vae/ae.safetensors",
)
MARKERS = {"prefix": "[FOUR-VIEWS]", "panels": ["[TOP-LEFT]", "[TOP-RIGHT]", "[BOTTOM-LEFT]", "[BOTTOM-RIGHT]"]}


class World:
    """The server, the local settings and everything outside the server's folders."""

    def __init__(self, root: Path):
        self.root, self.base = root, root / "comfy"
        self.local = root / "local"  # this machine's own things: settings, sd-scripts checkouts
        self.outside = root / "outside"  # private files a workflow must not reach
        self.sentinels = [sentinel_checkout(self.local / "sentinel"), sentinel_checkout(self.local / "tampered")]
        self.settings = self.local / "settings.json"
        for name in ("sentinel", "tampered"):
            out = mvic_cli(
                "config",
                "--file",
                str(self.settings),
                "add-trainer",
                name,
                "--sd-scripts",
                str(self.local / name),
                "--python",
                str(self.local / name / "venv" / "bin" / "python"),
            )
            assert out.returncode == 0, out.stderr
        lib = self.local / "tampered" / "library" / "train_util.py"
        lib.write_text(lib.read_text() + "# changed after setup\n")
        self.outside.mkdir()
        (self.outside / "secret.txt").write_text("PRIVATE-SECRET-TEXT")
        (self.outside / "model.safetensors").write_bytes(b"\0" * 64)
        small_dataset(self.outside / "private_dataset", rows=2, cols=2)
        for relative in PLACEHOLDER_MODELS:
            (self.base / "models" / relative).parent.mkdir(parents=True, exist_ok=True)
            (self.base / "models" / relative).write_bytes(b"placeholder")

    def scan(self) -> FileScan:
        return FileScan([self.root])

    def assert_contained(self, scan: FileScan, listener: Listener) -> None:
        ours = [
            self.base / "output",
            self.base / "models",
            self.base / "user",
            self.base / "temp",
            self.base / "comfyui.log",
        ]
        assert scan.changes(ignore=ours) == {"added": [], "changed": [], "removed": []}
        assert [s for s in self.sentinels if s.exists()] == [], "a program named by the workflow ran"
        assert listener.requests == []
        leaked = [
            p
            for p in (self.base / "output").rglob("*")
            if p.is_file() and not p.is_symlink() and b"PRIVATE-SECRET-TEXT" in p.read_bytes()
        ]
        assert leaked == [], f"outside data copied into {leaked}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    paths = comfyui_paths()
    if paths is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout to run it")
    world = World(tmp_path_factory.mktemp("hostile_trainer"))
    env = {"MVIC_SETTINGS": str(world.settings), "SD_SCRIPTS_DIR": "", "SD_SCRIPTS_PYTHON": "", **SECRETS}
    world.server = ComfyServer(*paths, base_dir=world.base, env=env).start()
    yield world
    world.server.stop()


def _api(name: str, class_type: str, **inputs) -> dict:
    prompt = json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text(encoding="utf-8"))
    node = next(entry for entry in prompt.values() if entry["class_type"] == class_type)
    node["inputs"].update(inputs)
    return prompt


def _refused(world: World, prompt: dict, *expected: str) -> str:
    scan = world.scan()
    with Listener() as listener:
        text = refusal(world.server, prompt)
    world.assert_contained(scan, listener)
    for phrase in expected:
        assert phrase in text, f"{phrase!r} not in the refusal: {text[:3000]}"
    return text


TRAINER_CASES = {
    "sd_scripts_dir names a folder": (
        lambda w: {"sd_scripts_dir": str(w.local / "sentinel")},
        [
            "LoRATrainer.sd_scripts_dir",
            "is not an sd-scripts checkout configured on this machine",
            "python -m mvic config add-trainer",
        ],
    ),
    "sd_scripts_dir names an unknown trainer": (
        lambda w: {"sd_scripts_dir": "evil"},
        ["LoRATrainer.sd_scripts_dir", "'evil'", "python -m mvic config add-trainer"],
    ),
    "extra_args overwrite the FLUX model": (
        lambda w: {"extra_args": f"--output_dir {w.base / 'models' / 'diffusion_models'} --output_name flux1-dev"},
        ["LoRATrainer.extra_args", "--output_dir", "--unsafe-extra-args"],
    ),
    "extra_args upload to the hub": (
        lambda w: {"extra_args": "--huggingface_repo_id me/stolen --save_state_to_huggingface --async_upload"},
        ["LoRATrainer.extra_args", "--huggingface_repo_id", "uploads or logs to a service"],
    ),
    "extra_args log to a service": (
        lambda w: {"extra_args": "--log_with wandb --log_tracker_config http://127.0.0.1:9/tracker.toml"},
        ["LoRATrainer.extra_args", "--log_with", "uploads or logs to a service"],
    ),
    "extra_args import a module": (
        lambda w: {"extra_args": "--optimizer_type os.system"},
        ["LoRATrainer.extra_args", "--optimizer_type", "plain name"],
    ),
    "flux_path outside the model folders": (
        lambda w: {"flux_path": str(w.outside / "model.safetensors")},
        ["LoRATrainer.flux_path", "outside ComfyUI's diffusion_models folders", "extra_model_paths.yaml"],
    ),
    "ae_path climbs out": (
        lambda w: {"ae_path": "../../../outside/model.safetensors"},
        ["LoRATrainer.ae_path", "outside ComfyUI's vae folders", "extra_model_paths.yaml"],
    ),
    "dataset_dir absolute outside": (
        lambda w: {"dataset_dir": str(w.outside / "private_dataset")},
        ["LoRATrainer.dataset_dir", "python -m mvic config allow-folder"],
    ),
    "dataset_dir climbs out": (
        lambda w: {"dataset_dir": "../../outside/private_dataset"},
        ["LoRATrainer.dataset_dir", "leaves", "python -m mvic config allow-folder"],
    ),
}


@pytest.mark.parametrize("case", list(TRAINER_CASES))
def test_hostile_trainer_widgets_are_refused_when_queued(world, case):
    overrides, expected = TRAINER_CASES[case]
    text = _refused(world, _api("train_lora", "MVIC_LoRATrainer", **overrides(world)), *expected)
    assert "custom_validation_failed" in text  # refused at /prompt, before any node ran


def test_a_checkout_changed_since_setup_is_refused(world):
    _refused(
        world,
        _api("train_lora", "MVIC_LoRATrainer", sd_scripts_dir="tampered"),
        "changed since it was set up",
        "python -m mvic config add-trainer tampered",
    )


def _shared_dataset(world: World, name: str) -> Path:
    """A dataset someone shared, unpacked into output/ (the only place a workflow may train from)."""
    return small_dataset(world.base / "output" / name, rows=2, cols=2)


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_a_shared_dataset_whose_manifest_names_outside_files_is_refused(world, how):
    folder = _shared_dataset(world, f"shared_{how}")
    secret = world.outside / "secret.txt"
    manifest = folder / "metadata.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    records[0]["caption_file"] = str(secret) if how == "absolute" else "../../../outside/secret.txt"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    _refused(
        world,
        _api("train_lora", "MVIC_LoRATrainer", dataset_dir=folder.name, sd_scripts_dir="sentinel"),
        "metadata.jsonl",
        "reads only what the dataset's own manifest names inside it",
        "re-export the dataset",
    )


def test_a_shared_dataset_with_a_caption_linked_outside_is_refused(world):
    folder = _shared_dataset(world, "shared_link")
    caption = sorted((folder / "images").glob("*.txt"))[0]
    caption.unlink()
    caption.symlink_to(world.outside / "secret.txt")
    _refused(
        world,
        _api("train_lora", "MVIC_LoRATrainer", dataset_dir=folder.name, sd_scripts_dir="sentinel"),
        "metadata.jsonl",
        "is a link leading out of the dataset folder",
        "re-export the dataset",
    )


def _lora(world: World, name: str, metadata: dict) -> str:
    import tiny_models

    tiny_models.stand_in_lora(world.base / "models" / "loras" / name, metadata)
    return name


LORA_CASES = {
    "65536 px panels": (
        {
            "mvic_layout": json.dumps({"rows": 2, "cols": 2, "panel_width": 65536, "panel_height": 65536}),
            "mvic_markers": json.dumps(MARKERS),
        },
        "mvic_layout.panel_width = 65536",
    ),
    "9x9 panels": (
        {"mvic_layout": json.dumps({"rows": 9, "cols": 9, "panel_width": 64, "panel_height": 64})},
        "9x9 panels",
    ),
    "malformed markers": ({"mvic_markers": '{"prefix": '}, "mvic_markers is not valid JSON"),
}


@pytest.mark.parametrize("case", list(LORA_CASES))
def test_a_shared_lora_with_hostile_metadata_is_refused_naming_file_and_field(world, case):
    metadata, field = LORA_CASES[case]
    name = _lora(world, f"shared_{case.replace(' ', '_')}.safetensors", metadata)
    _refused(world, _api("text_to_views", "MVIC_ICLoRASampler", lora_name=name), "ICLoRASampler", name, field)


def test_sampler_lora_path_outside_the_loras_folders_is_refused(world):
    import tiny_models

    outside = tiny_models.stand_in_lora(world.outside / "lora.safetensors", {})
    _refused(
        world,
        _api("text_to_views", "MVIC_ICLoRASampler", lora_name="(none)", lora_path=str(outside)),
        "ICLoRASampler.lora_path",
        "outside ComfyUI's loras folders",
        "extra_model_paths.yaml",
    )


def test_an_old_saved_training_workflow_still_validates(world):
    """train_lora as saved before sd_scripts_dir became a list (its value ''), converted the way the
    frontend restores it: validation passes, and the run stops only at the missing dataset."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mvic_workflow_api_hostile", ROOT / "tools" / "workflow_api.py")
    workflow_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workflow_api)
    old = json.loads(
        (ROOT / "tests" / "fixtures" / "saved_workflows" / "train_lora.v1.json").read_text(encoding="utf-8")
    )
    prompt = workflow_api.to_api(old)
    trainer = next(e for e in prompt.values() if e["class_type"] == "MVIC_LoRATrainer")["inputs"]
    assert (trainer["sd_scripts_dir"], trainer["compile"], trainer["caption_problems"]) == ("", "auto", "refuse")
    text = _refused(
        world, prompt, "execution_error", "metadata.jsonl"
    )  # '' ran as the default: the 'sentinel' checkout
    assert "custom_validation_failed" not in text


# ------------------------------------------------------------------------------ /object_info

FORBIDDEN_NAME = re.compile(
    r"url|host|address|endpoint|port\b|key_?file|api_?key|secret|token|password|python|interpreter|"
    r"executable|program|command|sd_scripts|checkout",
    re.IGNORECASE,
)


def free_text_violations(object_info: dict) -> set[tuple[str, str]]:
    """Free-text widgets (STRING) of any node whose name or default says program location, network
    address or key file. A COMBO is fine: it picks among names configured on this machine."""
    found = set()
    for node, info in object_info.items():
        for part in ("required", "optional"):
            for name, spec in (info.get("input", {}).get(part) or {}).items():
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if spec[0] != "STRING" or options.get("forceInput"):
                    continue
                default = str(options.get("default", ""))
                if FORBIDDEN_NAME.search(name) or "://" in default or default.startswith(("/", "~")):
                    found.add((node, name))
    return found


def test_no_widget_takes_a_program_location_an_address_or_a_key_file(world):
    info = world.server.get("/object_info")
    assert "MVIC_LoRATrainer" in info and "KSampler" in info  # every node ComfyUI has, core included
    assert free_text_violations(info) == set()
    trainer_choice = info["MVIC_LoRATrainer"]["input"]["optional"]["sd_scripts_dir"]
    assert trainer_choice[1]["options"] == ["(default)", "sentinel", "tampered"]  # the names configured here, no paths


def test_the_object_info_check_catches_the_old_trainer_widget():
    old = {
        "MVIC_LoRATrainer": {"input": {"optional": {"sd_scripts_dir": ["STRING", {"default": ""}]}}},
        "X": {
            "input": {
                "required": {"server": ["STRING", {"default": "http://127.0.0.1:11434/v1"}], "ok": ["STRING", {}]}
            }
        },
    }
    assert free_text_violations(old) == {("MVIC_LoRATrainer", "sd_scripts_dir"), ("X", "server")}
