"""The captioner inside a real ComfyUI, driven the way a shared workflow arrives (/prompt).

Hostile workflows (issue 9): a server address, a key file or a cache folder in a widget is
refused before anything runs, by name and with the local fix; a listener on 127.0.0.1 gets no
request, the key file is never read, nothing appears outside ComfyUI's output folder. Endpoints
configured in the local settings work against the fake wire-protocol server, and the
environment's keys (sentinels here) never leave. Hostile servers (issue 10): control characters
and overlong answers never reach a caption file, a 200 that is not JSON fails one composite, and
ComfyUI's Cancel (/interrupt) stops a captioning run within 5 s.
"""

import importlib.util
import json
import os
import time
import unicodedata
import urllib.request
import uuid

import pytest
import workflow_overrides
from caption_server import CaptionServer, hostile_text, non_json, trickle
from comfy_harness import ComfyServer, comfyui_paths
from hostile import FileScan, Listener, refusal
from packload import ROOT, mvic_module

SENTINELS = {"GEMINI_API_KEY": "AIza-SENTINEL-env-gemini-key", "OPENAI_API_KEY": "sk-SENTINEL-env-openai-key"}
ENDPOINT_KEY = "key-configured-for-the-fake-endpoint"
settings_mod = mvic_module("settings")
MAX_CAPTION_CHARS = mvic_module("captions.text").MAX_CAPTION_CHARS


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """This machine's own files, outside every ComfyUI folder: settings, a private photo set, a key file."""
    root = tmp_path_factory.mktemp("local")
    private = root / "Pictures" / "private" / "set1"
    private.mkdir(parents=True)
    for n in range(4):
        (private / f"{n}.jpg").write_bytes(b"\xff\xd8\xff" + bytes(64))  # never read; only its path is in the workflow
    (root / "elsewhere").mkdir()
    return root


@pytest.fixture(scope="module")
def comfy(local, tmp_path_factory):
    paths = comfyui_paths()
    if paths is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON)")
    env = {
        "MVIC_SETTINGS": str(local / "settings.json"),
        "FAKE_ENDPOINT_KEY": ENDPOINT_KEY,
        "GOOGLE_API_KEY": "",
        **SENTINELS,
    }
    server = ComfyServer(*paths, base_dir=tmp_path_factory.mktemp("comfy_captions"), env=env)
    server.start()
    yield server
    server.stop()


def configure(local_dir, **endpoints) -> None:
    settings_mod.save_settings(
        settings_mod.LocalSettings(
            path=local_dir / "settings.json", endpoints=endpoints, caption_cache_dir=str(local_dir / "caption-cache")
        )
    )


def prompt(folder: str, loader_path: str = "", **captioner) -> dict:
    inputs = {
        "backend": "template",
        "model": "",
        "base_url": "",
        "key_file": "",
        "trigger": "",
        "concurrency": 2,
        "rpm": 0,
        "appearance_only": False,
        "input_mode": "composite",
        "cache_dir": "",
        **captioner,
    }
    source = {"source": "folder", "path": loader_path} if loader_path else {"source": "sample", "path": ""}
    return {
        "1": {
            "class_type": "MVIC_MultiViewLoader",
            "inputs": {**source, "views": 4, "selection": "auto", "max_sets": 2},
        },
        "2": {
            "class_type": "MVIC_CompositeGrid",
            "inputs": {"mv_sets": ["1", 0], "rows": 2, "cols": 2, "panel_width": 64, "panel_height": 64, "fit": "crop"},
        },
        "3": {"class_type": "MVIC_GeminiCaptioner", "inputs": {"composites": ["2", 0], **inputs}},
        "4": {
            "class_type": "MVIC_SaveICLoRADataset",
            "inputs": {"composites": ["3", 0], "folder": folder, "image_format": "png"},
        },
    }


def scan(comfy, local) -> FileScan:
    return FileScan([local, comfy.base_dir / "input", comfy.base_dir / "models"])


def captions(comfy, folder: str) -> list[tuple[dict, str]]:
    root = comfy.base_dir / "output" / folder
    records = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    return [(r, (root / r["caption_file"]).read_text(encoding="utf-8")) for r in records]


# -- hostile workflows (issue 9) ------------------------------------------------------------


def test_a_server_address_in_the_workflow_uploads_nothing(comfy, local):
    """MultiViewLoader.path = ~/Pictures/private + GeminiCaptioner.base_url: no photo, no key leaves."""
    configure(local)
    files = scan(comfy, local)
    with Listener() as listener:
        for backend in ("gemini", "openai"):
            hostile = prompt(
                "stolen",
                loader_path=str(local / "Pictures" / "private"),
                backend=backend,
                base_url=listener.url + "/v1",
            )
            error = refusal(comfy, hostile)
            assert "GeminiCaptioner.base_url" in error
            assert "python -m mvic config add-endpoint NAME --base-url URL" in error
            assert listener.url in error  # the value is named, so the user sees what the workflow asked for
    assert listener.requests == []
    assert files.changes() == {"added": [], "changed": [], "removed": []}
    assert not (comfy.base_dir / "output" / "stolen").exists()


def test_a_key_file_in_the_workflow_is_never_read(comfy, local):
    """key_file = ~/.git-credentials: the file is a FIFO holding a secret; had anything read it, it would be drained."""
    configure(local)
    fifo = local / "git-credentials"
    if not fifo.exists():
        os.mkfifo(fifo)
    holder = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # keeps the pipe open and writes the secret into it
    try:
        os.write(holder, b"https://user:SECRET-TOKEN@example.com\n")
        files = scan(comfy, local)
        with Listener() as listener:
            error = refusal(comfy, prompt("keyfile", backend="gemini", key_file=str(fifo)))
            error_openai = refusal(comfy, prompt("keyfile", backend="openai", key_file="~/.cache/huggingface/token"))
        assert "GeminiCaptioner.key_file" in error and "--key-file FILE" in error
        assert "GeminiCaptioner.key_file" in error_openai
        assert os.read(holder, 4096) == b"https://user:SECRET-TOKEN@example.com\n"  # still all there: never read
        assert listener.requests == [] and "SECRET-TOKEN" not in error
        assert files.changes() == {"added": [], "changed": [], "removed": []}
    finally:
        os.close(holder)


def test_a_cache_folder_in_the_workflow_is_refused(comfy, local):
    configure(local)
    files = scan(comfy, local)
    error = refusal(comfy, prompt("cachedir", backend="gemini", cache_dir=str(local / "elsewhere")))
    assert "GeminiCaptioner.cache_dir" in error and "python -m mvic config set caption_cache_dir DIR" in error
    assert files.changes() == {"added": [], "changed": [], "removed": []}
    assert list((local / "elsewhere").iterdir()) == []


@pytest.mark.parametrize(
    "backend, words",
    [
        ("ollama", "python -m mvic config add-endpoint ollama --base-url URL"),
        ("openai-compatible", "choose 'openai' for api.openai.com"),
    ],
)
def test_an_endpoint_this_machine_does_not_have_is_refused_with_how_to_add_it(comfy, local, backend, words):
    configure(local)
    with Listener() as listener:
        error = refusal(comfy, prompt("unknown", backend=backend))
    assert "GeminiCaptioner.backend" in error and words in error and listener.requests == []


def test_an_old_saved_workflow_still_runs(comfy, local):
    """The shipped build_dataset.json of main fe9f962, as a user saved it, converted as the frontend loads it."""
    spec = importlib.util.spec_from_file_location("mvic_workflow_api", ROOT / "tools" / "workflow_api.py")
    workflow_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(workflow_api)
    configure(local)
    saved_file = ROOT / "tests" / "fixtures" / "saved_workflows" / "build_dataset.v1.json"
    saved = json.loads(saved_file.read_text(encoding="utf-8"))
    old, _ = workflow_overrides.apply(workflow_api.to_api(saved))  # 64-px panels: quick on this CPU
    (folder,) = [e["inputs"]["folder"] for e in old.values() if e["class_type"] == "MVIC_SaveICLoRADataset"]
    comfy.run_prompt(old, timeout=300)
    written = captions(comfy, folder)
    assert written and {record["caption"]["backend"] for record, _ in written} == {"template"}


def test_object_info_offers_no_free_address_key_file_or_folder(comfy, local):
    configure(local)
    inputs = comfy.get("/object_info/MVIC_GeminiCaptioner")["MVIC_GeminiCaptioner"]["input"]
    specs = {**inputs["required"], **inputs.get("optional", {})}
    assert [name for name, spec in specs.items() if spec[0] == "STRING"] == ["model", "trigger"]
    # V3 combos: ["COMBO", {"options": [...]}]
    retired = [name for name, spec in specs.items() if spec[1].get("options") == [""]]
    assert retired == ["base_url", "key_file", "cache_dir"]
    assert specs["backend"][1]["options"] == ["template", "gemini", "openai"]


# -- endpoints configured locally ------------------------------------------------------------


def test_configured_endpoints_caption_and_the_environment_keys_stay_home(comfy, local):
    with CaptionServer(api_key=ENDPOINT_KEY) as gemini_like, CaptionServer() as openai_like:
        configure(
            local,
            fake=settings_mod.Endpoint("fake", "gemini", gemini_like.url, ("FAKE_ENDPOINT_KEY",)),
            ollama=settings_mod.Endpoint("ollama", "openai-compatible", openai_like.openai_url),
        )
        info = comfy.get("/object_info/MVIC_GeminiCaptioner")["MVIC_GeminiCaptioner"]
        assert info["input"]["required"]["backend"][1]["options"] == ["template", "gemini", "openai", "fake", "ollama"]
        comfy.run_prompt(prompt("via_fake", backend="fake"), timeout=300)
        comfy.run_prompt(prompt("via_ollama", backend="ollama"), timeout=300)
    assert gemini_like.count == 2 and openai_like.count == 2
    assert {h.get("x-goog-api-key") for h in gemini_like.headers} == {ENDPOINT_KEY}
    assert {h.get("authorization") for h in openai_like.headers} == {"Bearer no-key-needed"}
    sent = json.dumps(gemini_like.headers + openai_like.headers)
    assert not [name for name, value in SENTINELS.items() if value in sent]
    for folder, backend in (("via_fake", "gemini"), ("via_ollama", "openai-compatible")):
        for record, text in captions(comfy, folder):
            assert record["caption"]["backend"] == backend and "red ceramic mug" in text
    assert len(list((local / "caption-cache").rglob("*.json"))) >= 2  # the cache folder from the local settings


# -- hostile servers (issue 10) --------------------------------------------------------------


def test_control_characters_and_overlong_answers_never_reach_a_caption_file(comfy, local):
    with CaptionServer(default=hostile_text()) as server:
        configure(local, fake=settings_mod.Endpoint("fake", "openai-compatible", server.openai_url))
        comfy.run_prompt(prompt("hostile_text", backend="fake", model="hostile-1"), timeout=300)
    written = captions(comfy, "hostile_text")
    assert len(written) == 2 and server.count == 2
    for record, text in written:
        assert record["caption"]["backend"] == "openai-compatible"
        assert not [c for c in text if unicodedata.category(c) in ("Cc", "Cs") or c == "\u202e"], repr(text[:200])
        assert len(text) <= MAX_CAPTION_CHARS and text.startswith("[FOUR-VIEWS] A mug")


def test_a_200_that_is_not_json_is_one_failed_composite_not_a_failed_run(comfy, local):
    with CaptionServer([non_json()]) as server:
        configure(local, fake=settings_mod.Endpoint("fake", "gemini", server.url))
        comfy.run_prompt(prompt("non_json", backend="fake", model="nonjson-1", concurrency=1), timeout=300)
    backends = sorted(record["caption"]["backend"] for record, _ in captions(comfy, "non_json"))
    assert backends == ["gemini", "template"] and server.count == 2


def test_cancel_stops_a_captioning_run_within_5_seconds(comfy, local):
    with CaptionServer(default=trickle(0.5)) as server:
        configure(local, slow=settings_mod.Endpoint("slow", "openai-compatible", server.openai_url))
        slow = prompt("cancelled", backend="slow", model="slow-1")
        queued = comfy.post("/prompt", {"prompt": slow, "client_id": uuid.uuid4().hex})
        deadline = time.monotonic() + 240
        while not server.stream_log and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.stream_log, f"no request reached the trickling server:\n{comfy.log()}"
        time.sleep(1.0)  # well into the trickle
        cancelled = time.monotonic()
        interrupt = urllib.request.Request(comfy.url + "/interrupt", data=b"{}", method="POST")
        urllib.request.urlopen(interrupt, timeout=30).read()
        finished = None
        while time.monotonic() < cancelled + 30:
            if queued["prompt_id"] in comfy.get(f"/history/{queued['prompt_id']}"):
                finished = time.monotonic()
                break
            time.sleep(0.1)
        while time.monotonic() < cancelled + 5 and any(r["hung_up"] is None for r in server.stream_log):
            time.sleep(0.1)
    took = None if finished is None else finished - cancelled
    assert took is not None and took < 5.0, f"the prompt ended {took} s after Cancel"
    print(
        f"Cancel: the prompt ended {finished - cancelled:.2f} s after /interrupt; the server saw its connections "
        "closed after " + ", ".join(f"{r['hung_up'] - cancelled:.2f} s" for r in server.stream_log if r["hung_up"])
    )
    status = comfy.get(f"/history/{queued['prompt_id']}")[queued["prompt_id"]]["status"]
    assert any(message[0] == "execution_interrupted" for message in status["messages"])
    # the connections in flight were closed
    assert all(r["hung_up"] is not None and r["hung_up"] - cancelled < 5.0 for r in server.stream_log)
    assert not (comfy.base_dir / "output" / "cancelled").exists()
