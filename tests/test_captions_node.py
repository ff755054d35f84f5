"""The GeminiCaptioner node: no key widget, nothing secret in a saved workflow, IS_CHANGED."""
import json
import math
import os

import pytest
from caption_server import CaptionServer, blocked, make_test_composites
from packload import mvic_module, node_class, pack

KEY = "AIza-SENTINEL-node-key-5555555555"
Captioner = node_class("MVIC_GeminiCaptioner")
parse_mod = mvic_module("captions.parse")


@pytest.fixture(autouse=True)
def no_env_keys(monkeypatch):
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def widget_values(**overrides):
    """What ComfyUI would store for the node's widgets: every non-link input's default, then overrides."""
    types = Captioner.INPUT_TYPES()
    values = {}
    for group in ("required", "optional"):
        for name, spec in types[group].items():
            if isinstance(spec[0], list):
                values[name] = spec[1]["default"]
            elif spec[0] in ("STRING", "INT", "FLOAT", "BOOLEAN"):
                values[name] = spec[1]["default"]
    values.update(overrides)
    return values


def test_registered_under_its_name_with_no_key_widget():
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["MVIC_GeminiCaptioner"] == "GeminiCaptioner"
    inputs = {**Captioner.INPUT_TYPES()["required"], **Captioner.INPUT_TYPES()["optional"]}
    assert Captioner.RETURN_TYPES == ("MV_COMPOSITES", "STRING")
    secretish = [n for n in inputs if any(w in n.lower() for w in ("api_key", "apikey", "token", "secret", "password"))]
    assert secretish == []
    assert [n for n in inputs if "key" in n.lower()] == ["key_file"] and inputs["key_file"][1]["default"] == ""
    assert inputs["backend"][0] == ["template", "gemini", "openai-compatible"] and inputs["backend"][1]["default"] == "template"


def test_template_backend_needs_no_key_and_no_network():
    composites = make_test_composites(3)
    captioned, report = Captioner().caption(composites, **widget_values())
    assert report == "captions: template backend (offline), 3 composite(s) captioned"
    for item in captioned.items:
        assert item.caption.backend == "template"
        assert parse_mod.validate_caption(item.caption.text, item.markers) == []


def test_a_saved_workflow_holds_the_key_file_path_never_the_key(tmp_path):
    key_file = tmp_path / "secrets" / "gemini.key"
    key_file.parent.mkdir()
    key_file.write_text(KEY + "\n")
    with CaptionServer(api_key=KEY) as server:
        widgets = widget_values(backend="gemini", base_url=server.url, key_file=str(key_file), cache_dir=str(tmp_path / "cache"))
        # The API-format prompt and the UI workflow ComfyUI saves (also inside every output PNG).
        prompt = {"1": {"class_type": "MVIC_CompositeGrid", "inputs": {}}, "2": {"class_type": "MVIC_GeminiCaptioner", "inputs": {"composites": ["1", 0], **widgets}}}
        workflow = {"nodes": [{"id": 2, "type": "MVIC_GeminiCaptioner", "widgets_values": list(widgets.values())}]}
        captioned, report = Captioner().caption(make_test_composites(2), **widgets)
    assert server.count == 2 and all(c.caption.backend == "gemini" for c in captioned.items)
    assert f"key from key file {key_file}" in report
    saved = json.dumps(prompt) + json.dumps(workflow) + report
    assert str(key_file) in saved and KEY not in saved
    assert KEY not in repr(captioned.items[0].caption)


def test_is_changed_follows_settings_and_the_key_file_but_never_shows_the_key(tmp_path):
    key_file = tmp_path / "gemini.key"
    key_file.write_text(KEY)
    base = widget_values(backend="gemini", key_file=str(key_file))
    first = Captioner.IS_CHANGED(**base)
    assert Captioner.IS_CHANGED(**base) == first and KEY not in str(first)
    assert Captioner.IS_CHANGED(**{**base, "model": "gemini-2.0-flash"}) != first
    assert Captioner.IS_CHANGED(**{**base, "appearance_only": True}) != first
    os.utime(key_file, ns=(1, 1))  # a new key in the same file
    assert Captioner.IS_CHANGED(**base) != first


def test_failed_composites_make_the_next_queue_run_the_node_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with CaptionServer([blocked()], api_key=KEY) as server:
        widgets = widget_values(backend="gemini", base_url=server.url, cache_dir=str(tmp_path / "cache"), concurrency=1)
        _, report = Captioner().caption(make_test_composites(2), **widgets)
        assert report.count("template caption used for mug/set000") == 1 and "blocked the prompt" in report
        assert math.isnan(Captioner.IS_CHANGED(**widgets))  # never equal to itself: ComfyUI runs the node again
        _, report = Captioner().caption(make_test_composites(2), **widgets)
    assert server.count == 3  # the retry asked only for the failed composite; the other came from the cache
    assert "1 captioned by the model, 1 from cache" in report
    assert isinstance(Captioner.IS_CHANGED(**widgets), str)


def test_a_key_file_inside_a_folder_comfyui_serves_is_refused(tmp_path, monkeypatch):
    import sys
    import types

    served = tmp_path / "input"
    served.mkdir()
    (served / "gemini.key").write_text(KEY)
    fake = types.SimpleNamespace(get_input_directory=lambda: str(served), get_output_directory=lambda: str(tmp_path / "out"), get_temp_directory=lambda: str(tmp_path / "tmp"))
    monkeypatch.setitem(sys.modules, "folder_paths", fake)  # ComfyUI's module, as ComfyUI would provide it
    with pytest.raises(ValueError, match="inside ComfyUI's input folder, which ComfyUI serves over HTTP") as info:
        Captioner().caption(make_test_composites(1), **widget_values(backend="gemini", key_file=str(served / "gemini.key")))
    assert KEY not in str(info.value)
