"""Old saved workflows in ComfyUI's real frontend: the captioner's widget values are restored by
position, so each value of a workflow saved on main fe9f962 must come back in the widget it was
saved from, and what the frontend queues must name them so (a retired slot's value included,
which the server then refuses by name). Same browser setup as test_workflows_browser.py."""

from __future__ import annotations

import copy
import json

import pytest
from packload import ROOT
from test_workflows_browser import _load, _normalise, frontend, pytestmark  # noqa: F401 - fixture and skip marker

SAVED = ROOT / "tests" / "fixtures" / "saved_workflows"
OLD_VALUES = ["template", "", "", "", "", 4, 10, False, "composite", ""]
WIDGETS = [
    "backend",
    "model",
    "base_url",
    "key_file",
    "trigger",
    "concurrency",
    "rpm",
    "appearance_only",
    "input_mode",
    "cache_dir",
]


def _captioner(workflow: dict) -> dict:
    (node,) = [n for n in workflow["nodes"] if n["type"] == "MVIC_GeminiCaptioner"]
    return node


@pytest.mark.parametrize("name", ["build_dataset", "full_pipeline"])
def test_an_old_saved_workflow_keeps_every_captioner_value_in_its_widget(frontend, name):  # noqa: F811
    page, errors, _ = frontend
    workflow = json.loads((SAVED / f"{name}.v1.json").read_text(encoding="utf-8"))
    old = _captioner(workflow)
    assert old["widgets_values"] == OLD_VALUES
    _load(page, workflow, f"{name}.v1")
    widgets = page.evaluate("(id) => app.graph.getNodeById(id).widgets.map(w => [w.name, w.value])", old["id"])
    assert widgets == [list(pair) for pair in zip(WIDGETS, OLD_VALUES)]
    queued = page.evaluate("async () => (await app.graphToPrompt()).output")[str(old["id"])]["inputs"]
    assert _normalise({k: v for k, v in queued.items() if k != "composites"}) == dict(zip(WIDGETS, OLD_VALUES))
    assert errors == [], errors


def test_an_old_workflow_with_a_server_address_brings_it_back_in_base_url(frontend):  # noqa: F811
    page, errors, server = frontend
    workflow = copy.deepcopy(json.loads((SAVED / "build_dataset.v1.json").read_text(encoding="utf-8")))
    node = _captioner(workflow)
    node["widgets_values"][:5] = ["openai-compatible", "llava", "http://127.0.0.1:11434/v1", "", "mvstyle"]
    _load(page, workflow, "build_dataset.v1-with-base-url")
    queued = page.evaluate("async () => (await app.graphToPrompt()).output")
    inputs = queued[str(node["id"])]["inputs"]
    assert (inputs["backend"], inputs["model"], inputs["base_url"], inputs["trigger"], inputs["concurrency"]) == (
        "openai-compatible",
        "llava",
        "http://127.0.0.1:11434/v1",
        "mvstyle",
        4,
    )
    # Queued as the frontend would: refused by name, with the local fix, before anything runs.
    from hostile import refusal

    message = refusal(server, queued)
    assert "GeminiCaptioner.base_url" in message and "python -m mvic config add-endpoint NAME --base-url URL" in message
    assert errors == [], errors
