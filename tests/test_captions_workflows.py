"""Saved workflows keep loading (FOUNDATION.md): ComfyUI's frontend restores a node's widget
values by position, so the captioner's retired slots (base_url, key_file, cache_dir) stay where
they were. The shipped workflows as of main fe9f962 are the users' old saved files
(tests/fixtures/saved_workflows/*.v1.json): every value must land in the widget it was saved
from, and a value a workflow may no longer set is refused by that widget's name."""

import copy
import importlib.util
import json

import pytest
from packload import ROOT, node_class
from packload import nodes_by_id as _nodes_by_id  # noqa: E402

_nodes_by_id()  # our V3 nodes need ComfyUI's comfy_api: without COMFYUI_DIR this module skips

spec = importlib.util.spec_from_file_location("mvic_workflow_api", ROOT / "tools" / "workflow_api.py")
workflow_api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workflow_api)

SAVED = ROOT / "tests" / "fixtures" / "saved_workflows"
Captioner = node_class("MVIC_GeminiCaptioner")
CHECKED = ("backend", "model", "base_url", "key_file", "trigger", "cache_dir")  # VALIDATE_INPUTS' arguments
OLD_DEFAULTS = {
    "backend": "template",
    "model": "",
    "base_url": "",
    "key_file": "",
    "trigger": "",
    "concurrency": 4,
    "rpm": 10,
    "appearance_only": False,
    "input_mode": "composite",
    "cache_dir": "",
}


@pytest.fixture(autouse=True)
def no_local_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("MVIC_SETTINGS", str(tmp_path / "settings.json"))


def old_workflow(name: str) -> dict:
    return json.loads((SAVED / f"{name}.v1.json").read_text(encoding="utf-8"))


def captioner_inputs(workflow: dict) -> dict:
    (entry,) = [e for e in workflow_api.to_api(workflow).values() if e["class_type"] == "MVIC_GeminiCaptioner"]
    return {name: value for name, value in entry["inputs"].items() if name != "composites"}


@pytest.mark.parametrize("name", ["build_dataset", "full_pipeline"])
def test_an_old_saved_workflow_converts_with_every_value_in_its_widget(name):
    inputs = captioner_inputs(old_workflow(name))
    assert inputs == OLD_DEFAULTS
    assert Captioner.validate_inputs(**{k: inputs[k] for k in CHECKED}) is True


@pytest.mark.parametrize(
    "slot, name, value, words",
    [
        (2, "base_url", "http://127.0.0.1:11434/v1", "python -m mvic config add-endpoint NAME --base-url URL"),
        (3, "key_file", "/home/me/gemini.key", "--key-file FILE"),
        (9, "cache_dir", "/data/caption-cache", "python -m mvic config set caption_cache_dir DIR"),
    ],
)
def test_an_old_value_that_a_workflow_may_no_longer_set_is_refused_by_its_widget(slot, name, value, words):
    workflow = copy.deepcopy(old_workflow("build_dataset"))
    (node,) = [n for n in workflow["nodes"] if n["type"] == "MVIC_GeminiCaptioner"]
    node["widgets_values"][0] = "openai-compatible" if name == "base_url" else "gemini"
    node["widgets_values"][slot] = value
    node["widgets_values"][4] = "mvstyle"  # the trigger after it did not move
    inputs = captioner_inputs(workflow)
    assert inputs[name] == value and inputs["trigger"] == "mvstyle" and inputs["concurrency"] == 4
    message = Captioner.validate_inputs(**{k: inputs[k] for k in CHECKED})
    assert message.startswith(f"GeminiCaptioner.{name} = ") and words in message


def test_the_old_backend_values_are_still_choices_or_say_what_to_choose():
    choices = Captioner.INPUT_TYPES()["required"]["backend"][1]["options"]
    assert {"template", "gemini"} <= set(choices)  # old values that still mean the same
    assert "choose 'openai' for api.openai.com" in Captioner.validate_inputs(backend="openai-compatible")
