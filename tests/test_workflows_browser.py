"""The shipped workflows in ComfyUI's real frontend (the comfyui-frontend-package wheel ComfyUI
serves), in headless Chromium: each loads without a missing-node dialog or a validation toast,
keeps every widget value and link as written, queues exactly our API file, and is screenshotted
into docs/workflow_<name>.png (the README shows them).

Needs COMFYUI_DIR (see comfy_harness.py), Chromium (`apt-get install -y chromium`, or set
MVIC_CHROMIUM) and Python playwright (`pip install playwright`; no `playwright install`: it drives
the system Chromium). Skips with the reason when one is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
from comfy_harness import ComfyServer, comfyui_paths
from packload import ROOT

WORKFLOWS = ROOT / "workflows"
DOCS = ROOT / "docs"
NAMES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
CHROMIUM = os.environ.get("MVIC_CHROMIUM", "/usr/bin/chromium")
# Nothing but ComfyUI is reachable: the frontend's calls to the internet fail at once instead of hanging.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
MISSING_NODES = '.global-dialog[aria-labelledby="global-missing-nodes"]'
TOAST = ".p-toast-message"
# Pre-seeded user settings: no first-visit Templates dialog over the graph; full detail at any zoom and
# no minimap in the screenshots.
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.Graph.CanvasMenu": False,
}
SHOT_WIDTH, MARGIN = 1800, 30
FIT = """() => {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of app.graph._nodes) {
        x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
        x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    for (const g of app.graph._groups) {
        const [x, y, w, h] = g._bounding;
        x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + w); y1 = Math.max(y1, y + h);
    }
    return [x0, y0, x1, y1];
}"""


def _skip_reason() -> str | None:
    if comfyui_paths() is None:
        return "real-frontend test: set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout"
    if not Path(CHROMIUM).is_file():
        return f"real-frontend test: no Chromium at {CHROMIUM} (apt-get install -y chromium, or set MVIC_CHROMIUM)"
    if importlib.util.find_spec("playwright") is None:
        return (
            "real-frontend test: Python playwright is not installed "
            "(pip install playwright; no browser download needed)"
        )
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _model_placeholders(folder: Path) -> dict[str, Path]:
    """Empty files under the names the workflows use, so their dropdowns hold those values."""
    names = {
        "diffusion_models": ["flux1-dev.safetensors"],
        "text_encoders": ["clip_l.safetensors", "t5xxl_fp16.safetensors"],
        "vae": ["ae.safetensors"],
        "loras": ["mvic/multiview_iclora.safetensors"],
    }
    for kind, files in names.items():
        for name in files:
            (folder / kind / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / kind / name).touch()
    return {kind: folder / kind for kind in names}


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    base = tmp_path_factory.mktemp("browser_comfy")
    # Pre-seeded user settings: no first-visit Templates dialog over the graph.
    (base / "user" / "default").mkdir(parents=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(SETTINGS))
    server = ComfyServer(
        *comfyui_paths(), base_dir=base, model_dirs=_model_placeholders(tmp_path_factory.mktemp("models"))
    )
    (base / "input").mkdir(exist_ok=True)
    # LoadImage's default file, so the screenshot shows a reference photo: one view of the demo composite.
    from PIL import Image

    with Image.open(DOCS / "example_composite.png") as composite:
        composite.crop((0, 0, composite.width // 2, composite.height // 2)).save(base / "input" / "example.png")
    server.start()
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(base / "chromium-profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1600, "height": 1000},
            )
            page = context.pages[0] if context.pages else context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url, wait_until="domcontentloaded")  # never networkidle: the page keeps polling
            page.wait_for_function("window.app && app.graph && app.canvas", timeout=120_000)
            page.wait_for_timeout(1500)
            for dialog in page.locator(
                ".p-dialog-close-button, .p-dialog-header-close"
            ).all():  # in case a dialog opened anyway
                dialog.click()
            page.evaluate(
                "() => app.extensionManager.command.execute('Workspace.ToggleFocusMode')"
            )  # the graph alone on screen
            yield page, errors, server
            context.close()
    finally:
        server.stop()


def _load(page, workflow: dict, name: str):
    page.evaluate(
        "async ([wf, name]) => { await app.loadGraphData(wf, true, true, name, {showMissingModelsDialog: false}); }",
        [workflow, name],
    )
    page.wait_for_timeout(800)


def _normalise(value):
    """JSON as the browser writes it: 1.0 and 1 are the same number there."""
    return json.loads(
        json.dumps(value), parse_float=lambda text: float(text) if float(text) != int(float(text)) else int(float(text))
    )


@pytest.mark.parametrize("name", NAMES)
def test_workflow_loads_in_the_real_frontend(frontend, name):
    page, errors, _ = frontend
    workflow = json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))
    started = time.monotonic()
    _load(page, workflow, name)

    assert page.locator(MISSING_NODES).count() == 0, (
        f"{name}: missing-node dialog: {page.locator(MISSING_NODES).inner_text()[:500]}"
    )
    toasts = [t.inner_text() for t in page.locator(TOAST).all()]
    assert toasts == [], f"{name}: toast(s) after loading: {toasts}"
    state = page.evaluate(
        """() => ({
            graph: app.graph.serialize(),
            registered: Object.keys(LiteGraph.registered_node_types),
        })"""
    )
    types = {node["type"] for node in workflow["nodes"]}
    assert types - set(state["registered"]) == set()
    loaded = {node["id"]: node for node in state["graph"]["nodes"]}
    assert set(loaded) == {node["id"] for node in workflow["nodes"]}
    for node in workflow["nodes"]:
        # Every value lands on the widget it was written for (a count mismatch would shift them).
        assert _normalise(loaded[node["id"]].get("widgets_values")) == _normalise(node.get("widgets_values")), (
            f"{name}: node {node['id']} {node['type']}"
        )
    links = sorted(
        tuple(link[:6]) if isinstance(link, list) else tuple(link.values())[:6] for link in state["graph"]["links"]
    )
    assert links == sorted(tuple(link) for link in workflow["links"])

    # What the frontend would queue is exactly our API file (the converter agrees with the frontend).
    queued = page.evaluate("async () => (await app.graphToPrompt()).output")
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))
    assert _normalise(queued) == _normalise(api)
    assert errors == [], errors

    # Fit the whole graph into the screenshot.
    x0, y0, x1, y1 = page.evaluate(FIT)
    height = int(min(1400, max(500, (y1 - y0) / (x1 - x0) * SHOT_WIDTH + 2 * MARGIN)))
    page.set_viewport_size({"width": SHOT_WIDTH, "height": height})
    page.wait_for_timeout(300)
    scale = min((SHOT_WIDTH - 2 * MARGIN) / (x1 - x0), (height - 2 * MARGIN) / (y1 - y0))
    offset = [MARGIN / scale - x0, MARGIN / scale - y0]
    page.evaluate(
        "([scale, offset]) => { app.canvas.ds.scale = scale; app.canvas.ds.offset = offset; "
        "app.canvas.setDirty(true, true); app.canvas.draw(true, true); }",
        [scale, offset],
    )
    page.wait_for_timeout(500)
    DOCS.mkdir(exist_ok=True)
    page.locator("#graph-canvas").screenshot(path=str(DOCS / f"workflow_{name}.png"))
    print(f"\n[{name}: loaded and checked in {time.monotonic() - started:.1f} s -> docs/workflow_{name}.png]")


def _workflow_api():
    spec = importlib.util.spec_from_file_location("mvic_workflow_api_browser", ROOT / "tools" / "workflow_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _iclora_variants() -> dict[str, dict]:
    """The hand-made In-Context-LoRA workflow (a 2024 save, DualCLIPLoader with 3 of today's 4 widget values),
    and the same with values left over (a newer node) and missing at the end (an older one)."""
    fixture = ROOT / "tests" / "fixtures" / "workflow_iclora_film_storyboard_2024.json"
    base = json.loads(fixture.read_text(encoding="utf-8"))
    variants = {"as saved": base}
    for label, node_id, values in (
        ("value left over", 3, ["ae.safetensors", "from a newer node"]),
        ("values missing", 13, ["beta"]),
        ("no values", 1, None),
    ):
        workflow = json.loads(json.dumps(base))
        node = next(n for n in workflow["nodes"] if n["id"] == node_id)
        if values is None:
            node.pop("widgets_values")
        else:
            node["widgets_values"] = values
        variants[label] = workflow
    return variants


@pytest.mark.parametrize("label", list(_iclora_variants()))
def test_an_older_workflow_converts_exactly_as_the_real_frontend_queues_it(frontend, label):
    """Issue 14.4: what tools/workflow_api.py makes of the In-Context-LoRA workflow shape is what the real
    frontend queues after loading it (definitions from the same server's /object_info)."""
    page, errors, server = frontend
    workflow = _iclora_variants()[label]
    _load(page, workflow, f"iclora-{label}")
    queued = page.evaluate("async () => (await app.graphToPrompt()).output")
    converter = _workflow_api()
    definitions = {**converter.our_definitions(), **server.get("/object_info")}
    assert _normalise(queued) == _normalise(converter.to_api(workflow, definitions))
    assert queued["2"]["inputs"]["device"] == "default"
    assert errors == [], errors


SAVED = ROOT / "tests" / "fixtures" / "saved_workflows"


@pytest.mark.parametrize("filename", sorted(p.name for p in SAVED.glob("*.v[0-9].json")))
def test_a_workflow_saved_by_an_earlier_version_keeps_every_value_in_its_widget(frontend, filename):
    """Saved workflows restore widget values by position: after widgets changed (LoRATrainer's
    sd_scripts_dir became a list, caption_problems was added at the end) an old file still queues
    each value under its own input, new widgets at their defaults - what the converter's
    non-strict reading predicts."""
    workflow_api = _workflow_api()
    page, errors, _ = frontend
    workflow = json.loads((SAVED / filename).read_text(encoding="utf-8"))
    _load(page, workflow, filename)
    assert page.locator(MISSING_NODES).count() == 0
    queued = page.evaluate("async () => (await app.graphToPrompt()).output")
    assert _normalise(queued) == _normalise(workflow_api.to_api(workflow))
    assert errors == [], errors
