"""The GeminiCaptioner node: it names an endpoint of the local settings; no address, key file
or folder comes from a workflow; nothing secret in a saved workflow; IS_CHANGED."""

import json
import math
import os

import pytest
from caption_server import CaptionServer, blocked, make_test_composites
from packload import mvic_module, node_class

KEY = "AIza-SENTINEL-node-key-5555555555"
ENV_SENTINEL = "sk-SENTINEL-env-key-must-stay-home"
Captioner = node_class("MVIC_GeminiCaptioner")
parse_mod = mvic_module("captions.text")
settings_mod = mvic_module("settings")


@pytest.fixture(autouse=True)
def local_settings(monkeypatch, tmp_path):
    """Each test on its own settings file; the environment's keys are sentinels that must never be sent."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, ENV_SENTINEL)
    path = tmp_path / "settings.json"
    monkeypatch.setenv("MVIC_SETTINGS", str(path))
    return path


def configure(path, **endpoints):
    """What `python -m mvic config add-endpoint` writes; `cache` sets caption_cache_dir."""
    cache = endpoints.pop("cache", "")
    settings = settings_mod.LocalSettings(path=path, endpoints=endpoints, caption_cache_dir=str(cache))
    settings_mod.save_settings(settings)


def widget_values(**overrides):
    """What ComfyUI would store for the node's widgets: every non-link input's default, then overrides."""
    types = Captioner.INPUT_TYPES()
    values = {}
    for group in ("required", "optional"):
        for name, spec in types[group].items():
            if spec[0] in ("COMBO", "STRING", "INT", "FLOAT", "BOOLEAN"):
                values[name] = spec[1]["default"]
    values.update(overrides)
    return values


def test_no_widget_takes_an_address_a_key_file_or_a_folder(local_settings):
    assert Captioner.GET_SCHEMA().display_name == "Multi-View Captioner"
    inputs = {**Captioner.INPUT_TYPES()["required"], **Captioner.INPUT_TYPES()["optional"]}
    assert Captioner.RETURN_TYPES == ["MV_COMPOSITES", "STRING"]
    free_text = [name for name, spec in inputs.items() if spec[0] == "STRING"]
    assert free_text == ["model", "trigger"]  # checked: a model name, plain words
    # The old slots stay (saved workflows restore widgets by position) and take only "".
    for retired in ("base_url", "key_file", "cache_dir"):
        assert inputs[retired][1]["options"] == [""] and inputs[retired][1]["default"] == ""
    assert inputs["backend"][1]["options"] == ["template", "gemini", "openai"]
    assert inputs["backend"][1]["default"] == "template"
    order = list(Captioner.INPUT_TYPES()["required"]) + list(Captioner.INPUT_TYPES()["optional"])
    assert order == [
        "composites",
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
    ]  # the positions of main fe9f962


def test_backend_lists_the_endpoints_configured_on_this_machine(local_settings):
    ollama = settings_mod.Endpoint("ollama", "openai-compatible", "http://127.0.0.1:11434/v1")
    configure(local_settings, ollama=ollama)
    assert Captioner.INPUT_TYPES()["required"]["backend"][1]["options"] == ["template", "gemini", "openai", "ollama"]
    assert Captioner.validate_inputs(backend="ollama") is True


def test_a_broken_settings_file_still_lists_the_builtins_and_the_run_names_the_file(local_settings):
    local_settings.write_text("{not json")
    assert Captioner.INPUT_TYPES()["required"]["backend"][1]["options"] == ["template", "gemini", "openai"]
    message = Captioner.validate_inputs(backend="gemini")
    assert str(local_settings) in message and "python -m mvic config" in message
    assert isinstance(Captioner.fingerprint_inputs(**widget_values(backend="gemini")), str)  # IS_CHANGED never raises


@pytest.mark.parametrize(
    "widget, value, fix",
    [
        ("base_url", "http://127.0.0.1:9/v1", "python -m mvic config add-endpoint NAME --base-url URL"),
        ("key_file", "~/.git-credentials", "--key-file FILE"),
        ("cache_dir", "/tmp/elsewhere", "python -m mvic config set caption_cache_dir DIR"),
    ],
)
def test_a_retired_widget_with_a_value_is_refused_by_name(widget, value, fix):
    message = Captioner.validate_inputs(**{"backend": "gemini", widget: value})
    assert message.startswith(f"GeminiCaptioner.{widget} = ") and fix in message and f"clear {widget}" in message
    with pytest.raises(ValueError, match=f"GeminiCaptioner.{widget}"):  # a linked value is checked when the node runs
        Captioner.execute(make_test_composites(1), **widget_values(backend="gemini", **{widget: value}))


def test_linked_values_are_checked_when_the_node_runs():
    assert Captioner.validate_inputs(backend=None, model=None, trigger=None) is True  # what ComfyUI passes for links
    with pytest.raises(ValueError, match="no captioning endpoint named 'elsewhere'"):
        Captioner.execute(make_test_composites(1), **widget_values(backend="elsewhere"))


def test_unknown_and_old_backend_values_say_how_to_configure_them_locally():
    message = Captioner.validate_inputs(backend="ollama")
    assert "no captioning endpoint named 'ollama'" in message
    assert "python -m mvic config add-endpoint ollama --base-url URL" in message
    message = Captioner.validate_inputs(backend="openai-compatible")
    assert "choose 'openai' for api.openai.com" in message and "python -m mvic config add-endpoint NAME" in message


@pytest.mark.parametrize(
    "widget, value, words",
    [
        ("trigger", "x" * 5000, "at most 100"),
        ("trigger", "mv\x1b[31mstyle", "control characters"),
        ("model", "../../v1/files?x=", "a model name"),
    ],
)
def test_trigger_and_model_are_bounded(widget, value, words):
    assert words in Captioner.validate_inputs(backend="template", **{widget: value})


def test_template_backend_needs_no_key_and_no_network():
    composites = make_test_composites(3)
    captioned, report = Captioner.execute(composites, **widget_values())
    assert report == "captions: template backend (offline), 3 composite(s) captioned"
    for item in captioned.items:
        assert item.caption.backend == "template"
        assert parse_mod.validate_caption(item.caption.text, item.markers) == []


def test_an_environment_key_goes_only_to_the_endpoint_it_belongs_to(local_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_GEMINI_KEY", KEY)
    with CaptionServer() as gemini_like, CaptionServer() as openai_like:
        configure(
            local_settings,
            cache=tmp_path / "cache",
            proxy=settings_mod.Endpoint("proxy", "gemini", gemini_like.url, ("LOCAL_GEMINI_KEY",)),
            ollama=settings_mod.Endpoint("ollama", "openai-compatible", openai_like.openai_url),
        )
        _, report = Captioner.execute(make_test_composites(2), **widget_values(backend="proxy"))
        _, report2 = Captioner.execute(make_test_composites(2), **widget_values(backend="ollama"))
    assert gemini_like.count == 2 and openai_like.count == 2
    assert {h.get("x-goog-api-key") for h in gemini_like.headers} == {KEY}  # the key configured for it
    assert {h.get("authorization") for h in openai_like.headers} == {"Bearer no-key-needed"}
    sent = json.dumps(gemini_like.headers + openai_like.headers)
    assert ENV_SENTINEL not in sent  # $GEMINI_API_KEY / $OPENAI_API_KEY stayed home
    assert "key from $LOCAL_GEMINI_KEY" in report and "endpoint 'ollama' (no key)" in report2
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4  # the cache folder of the local settings


def test_a_saved_workflow_holds_the_endpoint_name_never_the_key_or_where_it_lives(local_settings, tmp_path):
    key_file = tmp_path / "secrets" / "gemini.key"
    key_file.parent.mkdir()
    key_file.write_text(KEY + "\n")
    with CaptionServer(api_key=KEY) as server:
        configure(
            local_settings,
            cache=tmp_path / "cache",
            mine=settings_mod.Endpoint("mine", "gemini", server.url, (), str(key_file)),
        )
        widgets = widget_values(backend="mine")
        # The API-format prompt and the UI workflow ComfyUI saves (also inside every output PNG).
        prompt = {
            "1": {"class_type": "MVIC_CompositeGrid", "inputs": {}},
            "2": {"class_type": "MVIC_GeminiCaptioner", "inputs": {"composites": ["1", 0], **widgets}},
        }
        workflow = {"nodes": [{"id": 2, "type": "MVIC_GeminiCaptioner", "widgets_values": list(widgets.values())}]}
        captioned, report = Captioner.execute(make_test_composites(2), **widgets)
        address = server.url
    assert server.count == 2 and all(c.caption.backend == "gemini" for c in captioned.items)
    saved = json.dumps(prompt) + json.dumps(workflow)
    assert '"mine"' in saved and KEY not in saved + report and str(key_file) not in saved and address not in saved
    assert KEY not in repr(captioned.items[0].caption)


def test_is_changed_follows_the_local_endpoint_but_never_shows_the_key(local_settings, tmp_path):
    key_file = tmp_path / "gemini.key"
    key_file.write_text(KEY)
    configure(local_settings, mine=settings_mod.Endpoint("mine", "gemini", "http://127.0.0.1:1", (), str(key_file)))
    base = widget_values(backend="mine")
    first = Captioner.fingerprint_inputs(**base)
    assert Captioner.fingerprint_inputs(**base) == first and KEY not in str(first)
    assert Captioner.fingerprint_inputs(**{**base, "model": "gemini-2.0-flash"}) != first
    assert Captioner.fingerprint_inputs(**{**base, "appearance_only": True}) != first
    os.utime(key_file, ns=(1, 1))  # a new key in the same file
    second = Captioner.fingerprint_inputs(**base)
    assert second != first
    configure(local_settings, mine=settings_mod.Endpoint("mine", "gemini", "http://127.0.0.1:2", (), str(key_file)))
    assert Captioner.fingerprint_inputs(**base) != second  # the endpoint now points elsewhere


def test_failed_composites_make_the_next_queue_run_the_node_again(local_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", KEY)
    with CaptionServer([blocked()], api_key=KEY) as server:
        mine = settings_mod.Endpoint("mine", "gemini", server.url, ("MY_KEY",))
        configure(local_settings, cache=tmp_path / "cache", mine=mine)
        widgets = widget_values(backend="mine", concurrency=1)
        _, report = Captioner.execute(make_test_composites(2), **widgets)
        assert report.count("template caption used for mug/set000") == 1 and "blocked the prompt" in report
        assert math.isnan(Captioner.fingerprint_inputs(**widgets))  # never equal to itself: ComfyUI runs the node again
        _, report = Captioner.execute(make_test_composites(2), **widgets)
    assert server.count == 3  # the retry asked only for the failed composite; the other came from the cache
    assert "1 captioned by the model, 1 from cache" in report
    assert isinstance(Captioner.fingerprint_inputs(**widgets), str)
