"""The shipped workflows, checked without ComfyUI: node types exist (ours, or core ones from the saved
/object_info snapshot), links join matching types, widget values fit INPUT_TYPES (count incl. the
frontend's control_after_generate value after seed widgets, types, ranges, choices), and the API
files are exactly what tools/workflow_api.py makes of the UI files."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import types

import pytest
from packload import ROOT, nodes_by_id

nodes_by_id()  # our V3 nodes need ComfyUI's comfy_api: without COMFYUI_DIR this module skips

spec = importlib.util.spec_from_file_location("mvic_workflow_api", ROOT / "tools" / "workflow_api.py")
workflow_api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workflow_api)

WORKFLOWS = ROOT / "workflows"
SHIPPED = {"full_pipeline", "build_dataset", "train_lora", "text_to_views", "image_to_views"}
NAMES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
MODEL_EXTENSIONS = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
# Core combos filled from a folder of the user's install (empty or near-empty in the snapshot).
CORE_FOLDER_INPUTS = {
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("LoadImage", "image"): "input",
}
MODEL_NOTE_FACTS = (
    "models/diffusion_models/flux1-dev.safetensors",
    "models/text_encoders/clip_l.safetensors",
    "models/text_encoders/t5xxl_fp16.safetensors",
    "models/vae/ae.safetensors",
)
LOADS_MODELS = {"UNETLoader", "DualCLIPLoader", "VAELoader", "MVIC_FluxLoaderAfterTraining", "MVIC_LoRATrainer"}


@contextlib.contextmanager
def folder_sentinels():
    """A stand-in for ComfyUI's folder_paths whose file lists are `<folder>` markers, so that
    the combos our nodes fill from model folders can be told apart from fixed choices."""
    fake = types.ModuleType("folder_paths")
    fake.get_filename_list = lambda folder: [f"<{folder}>"]
    fake.get_full_path = lambda folder, name: None
    comfy_io = workflow_api.load_pack().nodes.comfy_io
    saved = comfy_io._folder_paths
    comfy_io._folder_paths = lambda: fake
    try:
        yield
    finally:
        comfy_io._folder_paths = saved


@pytest.fixture(scope="module")
def definitions():
    core = workflow_api.core_definitions()
    with folder_sentinels():
        ours = workflow_api.our_definitions()
    return {**core, **ours}


@pytest.fixture(scope="module")
def plain_definitions():
    return workflow_api.all_definitions()


def load(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


def folder_of(kind: str, name: str, spec) -> str | None:
    """The model/input folder a combo is filled from, or None for fixed choices."""
    if (kind, name) in CORE_FOLDER_INPUTS:
        return CORE_FOLDER_INPUTS[(kind, name)]
    for choice in workflow_api.combo_choices(spec) or []:
        if isinstance(choice, str) and choice.startswith("<") and choice.endswith(">"):
            return choice[1:-1]
    return None


def test_the_five_workflows_ship_in_ui_and_api_form():
    assert set(NAMES) == SHIPPED
    assert {p.stem for p in (WORKFLOWS / "api").glob("*.json")} == SHIPPED


@pytest.mark.parametrize("name", NAMES)
def test_every_node_is_ours_core_or_frontend_only(name, definitions):
    core = workflow_api.core_definitions()
    assert all(not info.get("python_module", "").startswith("custom_nodes") for info in core.values()), (
        "snapshot holds non-core nodes"
    )
    ours = set(nodes_by_id())
    for node in load(name)["nodes"]:
        kind = node["type"]
        assert kind in ours or kind in core or kind in workflow_api.FRONTEND_ONLY, (
            f"{name}: node {node['id']} has unknown type {kind}"
        )
    used_core = {node["type"] for node in load(name)["nodes"]} - ours - workflow_api.FRONTEND_ONLY
    assert used_core <= set(workflow_api.core_types_used())


def test_core_snapshot_holds_exactly_the_core_nodes_used():
    assert sorted(workflow_api.core_definitions()) == workflow_api.core_types_used()


def _compatible(output_type: str, input_type: str) -> bool:
    if "*" in (output_type, input_type):
        return True
    return bool(set(output_type.split(",")) & set(input_type.split(",")))


@pytest.mark.parametrize("name", NAMES)
def test_links_join_matching_types(name, definitions):
    workflow = load(name)
    nodes = {node["id"]: node for node in workflow["nodes"]}
    ids = [link[0] for link in workflow["links"]]
    assert len(ids) == len(set(ids)) and max(ids, default=0) <= workflow["last_link_id"]
    assert max(nodes) <= workflow["last_node_id"]
    for link_id, origin, origin_slot, target, target_slot, link_type in workflow["links"]:
        source, sink = nodes[origin], nodes[target]
        out_def = definitions[source["type"]]
        output_type = out_def["output"][origin_slot]
        assert source["outputs"][origin_slot]["type"] == output_type and link_type == output_type
        assert link_id in (source["outputs"][origin_slot].get("links") or [])
        slot = sink["inputs"][target_slot]
        assert slot["link"] == link_id
        specs = {n: s for n, s, _ in workflow_api.ordered_inputs(definitions[sink["type"]])}
        assert slot["name"] in specs, f"{name}: link {link_id} into unknown input {sink['type']}.{slot['name']}"
        input_type = workflow_api.input_type(specs[slot["name"]])
        assert _compatible(output_type, input_type), (
            f"{name}: link {link_id} {source['type']}.{output_type} -> {sink['type']}.{slot['name']} ({input_type})"
        )
    # every link a node claims is in the table
    table = set(ids)
    for node in workflow["nodes"]:
        for slot in node.get("inputs", []):
            assert slot.get("link") is None or slot["link"] in table
        for slot in node.get("outputs", []):
            assert set(slot.get("links") or []) <= table


@pytest.mark.parametrize("name", NAMES)
def test_input_slots_match_input_types_and_required_sockets_are_linked(name, definitions):
    for node in load(name)["nodes"]:
        if node["type"] in workflow_api.FRONTEND_ONLY:
            continue
        definition = definitions[node["type"]]
        inputs = workflow_api.ordered_inputs(definition)
        specs = {n: (s, optional) for n, s, optional in inputs}
        for slot in node.get("inputs", []):
            assert slot["name"] in specs, f"{name}: {node['type']} has no input {slot['name']}"
            spec, _ = specs[slot["name"]]
            assert slot["type"] == workflow_api.input_type(spec)
            assert ("widget" in slot) == workflow_api.is_widget(spec), f"{name}: {node['type']}.{slot['name']}"
        linked = {slot["name"] for slot in node.get("inputs", []) if slot.get("link") is not None}
        for input_name, spec, optional in inputs:
            if not optional and not workflow_api.is_widget(spec):
                assert input_name in linked, f"{name}: required input {node['type']}.{input_name} is not connected"
        outputs = [(slot["name"], slot["type"]) for slot in node.get("outputs", [])]
        assert outputs == list(zip(definition["output_name"], definition["output"]))


@pytest.mark.parametrize("name", NAMES)
def test_widget_values_fit_input_types(name, definitions):
    for node in load(name)["nodes"]:
        kind = node["type"]
        if kind in ("Note", "MarkdownNote"):
            assert len(node["widgets_values"]) == 1 and isinstance(node["widgets_values"][0], str)
            continue
        where = f"{name}: node {node['id']} {kind}"
        values = workflow_api.named_widget_values(node, definitions[kind], strict=True)  # raises on a count mismatch
        for input_name, spec, count in workflow_api.widget_layout(definitions[kind]):
            value, extras = values[input_name][0], values[input_name][1:]
            options = spec[1] if len(spec) > 1 and spec[1] else {}
            kind_of = workflow_api.input_type(spec)
            label = f"{where}.{input_name} = {value!r}"
            if kind_of == "INT":
                assert isinstance(value, int) and not isinstance(value, bool), label
                assert options.get("min", -(2**64)) <= value <= options.get("max", 2**64), label
            elif kind_of == "FLOAT":
                assert isinstance(value, (int, float)) and not isinstance(value, bool), label
                assert options.get("min", float("-inf")) <= value <= options.get("max", float("inf")), label
            elif kind_of == "STRING":
                assert isinstance(value, str), label
            elif kind_of == "BOOLEAN":
                assert isinstance(value, bool), label
            elif kind_of == "COMBO":
                folder = folder_of(kind, input_name, spec)
                choices = [
                    c for c in workflow_api.combo_choices(spec) if not (isinstance(c, str) and c.startswith("<"))
                ]
                if value in choices:
                    pass
                elif folder == "input":
                    assert isinstance(value, str) and value.lower().endswith((".png", ".jpg", ".jpeg", ".webp")), label
                elif folder is not None:  # a file of the user's model folder: can't be checked here
                    assert isinstance(value, str) and value.endswith(MODEL_EXTENSIONS), label
                else:
                    pytest.fail(f"{label} is not one of {choices}")
            for extra in extras:
                if any(options.get(key) for key in workflow_api.UPLOAD_OPTIONS):
                    assert extra == "image", f"{label}: upload widget value {extra!r}"
                else:
                    assert extra in CONTROL_VALUES, f"{label}: control_after_generate {extra!r}"
            assert len(extras) == count - 1


def test_seed_widgets_count_their_control_value():
    sampler = workflow_api.our_definitions()["MVIC_ICLoRASampler"]
    trainer = workflow_api.our_definitions()["MVIC_LoRATrainer"]
    counts = {name: count for name, _, count in workflow_api.widget_layout(sampler)}
    assert counts["seed"] == 2 and counts["steps"] == 1
    # No control_after_generate option, but the frontend adds one to any INT named seed.
    assert {name: count for name, _, count in workflow_api.widget_layout(trainer)}["seed"] == 2
    load_image = workflow_api.core_definitions()["LoadImage"]
    assert workflow_api.widget_layout(load_image)[0][2] == 2  # the upload button's value follows the file name


def test_a_missing_control_value_is_an_error_in_shipped_workflows_and_noticed_elsewhere(plain_definitions):
    workflow = load("text_to_views")
    expected = workflow_api.to_api(workflow, plain_definitions, strict=True)
    node = next(n for n in workflow["nodes"] if n["type"] == "MVIC_ICLoRASampler")
    node["widgets_values"] = node["widgets_values"][:2] + node["widgets_values"][3:]  # drop control_after_generate
    with pytest.raises(workflow_api.WorkflowError, match="widget values, expected"):
        workflow_api.to_api(workflow, plain_definitions, strict=True)
    notes = []
    assert workflow_api.to_api(workflow, plain_definitions, notes=notes) == expected  # nothing shifted
    assert notes == [f"node {node['id']} (MVIC_ICLoRASampler): the save has no control value after seed"]


@pytest.mark.parametrize("name", NAMES)
def test_api_file_is_the_converters_output(name, plain_definitions):
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))
    assert api == workflow_api.to_api(load(name), plain_definitions), "run: python tools/workflow_api.py"
    assert (WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8") == workflow_api.dumps(api)
    assert all(entry["class_type"] not in workflow_api.FRONTEND_ONLY for entry in api.values())


@pytest.mark.parametrize("name", NAMES)
def test_notes_say_where_the_model_files_go(name):
    workflow = load(name)
    notes = "\n".join(n["widgets_values"][0] for n in workflow["nodes"] if n["type"] in ("Note", "MarkdownNote"))
    assert notes, f"{name} has no Note"
    kinds = {n["type"] for n in workflow["nodes"]}
    if kinds & LOADS_MODELS:
        for fact in MODEL_NOTE_FACTS:
            assert fact in notes, f"{name}: the Notes don't say {fact}"
    if "MVIC_LoRATrainer" in kinds:
        assert "python -m mvic setup-trainer --sd-scripts DIR" in notes


def test_full_pipeline_loads_flux_only_after_training():
    """FLUX must not sit in memory while sd-scripts trains: every model the sampler uses comes
    from FluxLoaderAfterTraining, which waits for the trainer's lora_path."""
    api = json.loads((WORKFLOWS / "api" / "full_pipeline.json").read_text(encoding="utf-8"))
    by_type = {}
    for node_id, entry in api.items():
        by_type.setdefault(entry["class_type"], []).append(node_id)
    assert not {"UNETLoader", "DualCLIPLoader", "VAELoader", "CheckpointLoaderSimple"} & set(by_type)
    (trainer,), (loader,), (sampler,) = (
        by_type["MVIC_LoRATrainer"],
        by_type["MVIC_FluxLoaderAfterTraining"],
        by_type["MVIC_ICLoRASampler"],
    )
    assert api[loader]["inputs"]["after"] == [trainer, 0]
    assert api[sampler]["inputs"]["lora_path"] == [trainer, 0]
    assert [api[sampler]["inputs"][k] for k in ("model", "clip", "vae")] == [[loader, 0], [loader, 1], [loader, 2]]
    (saver,) = by_type["MVIC_SaveICLoRADataset"]
    assert api[trainer]["inputs"]["dataset_dir"] == [saver, 0]
    (captioner,) = by_type["MVIC_GeminiCaptioner"]
    assert api[captioner]["inputs"]["backend"] == "template"  # runs offline, no key
    # The sampler's layout comes from the trained LoRA.
    assert [api[sampler]["inputs"][k] for k in ("rows", "cols", "panel_width", "panel_height")] == [0, 0, 0, 0]


@pytest.mark.parametrize("name", NAMES)
def test_training_is_not_re_run_by_a_random_seed(name):
    """The frontend gives every INT named seed a control_after_generate widget; 'randomize' on the
    trainer would change its settings (and so train again) on every queue."""
    for node in load(name)["nodes"]:
        if node["type"] == "MVIC_LoRATrainer":
            values = workflow_api.named_widget_values(node, workflow_api.our_definitions()["MVIC_LoRATrainer"])
            assert values["seed"][1] == "fixed"


@pytest.mark.parametrize("name", ["text_to_views", "image_to_views"])
def test_sampling_workflows_use_core_flux_loaders(name):
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))
    kinds = sorted(entry["class_type"] for entry in api.values())
    expected = [
        "DualCLIPLoader",
        "MVIC_ConsistencyScore",
        "MVIC_ICLoRASampler",
        "SaveImage",
        "SaveImage",
        "UNETLoader",
        "VAELoader",
    ]
    assert kinds == sorted(expected + (["LoadImage"] if name == "image_to_views" else []))
    clip = next(e for e in api.values() if e["class_type"] == "DualCLIPLoader")
    assert clip["inputs"]["type"] == "flux"
    sampler = next(e for e in api.values() if e["class_type"] == "MVIC_ICLoRASampler")
    if name == "image_to_views":
        image = next(k for k, e in api.items() if e["class_type"] == "LoadImage")
        assert sampler["inputs"]["reference_images"] == [image, 0]


@pytest.mark.parametrize("name", ["text_to_views", "image_to_views", "full_pipeline"])
def test_generating_workflows_end_with_the_consistency_score(name):
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8"))
    sampler_id = next(k for k, e in api.items() if e["class_type"] == "MVIC_ICLoRASampler")
    (score_id,) = [k for k, e in api.items() if e["class_type"] == "MVIC_ConsistencyScore"]
    score = api[score_id]["inputs"]
    assert score["image"] == [sampler_id, 0]  # the sampled composite, with the grid the notes name
    assert (score["rows"], score["cols"]) == (2, 2) and score["learned_similarity"] is False
    links = [value for entry in api.values() for value in entry["inputs"].values() if isinstance(value, list)]
    assert not any(link[0] == score_id for link in links)  # the last node


def test_converter_resolves_reroutes_and_primitive_nodes(plain_definitions):
    """Users' edits often add a Reroute or drive a widget from a PrimitiveNode; the API form has neither."""
    workflow = load("text_to_views")
    nodes = {node["id"]: node for node in workflow["nodes"]}
    sampler = next(n for n in workflow["nodes"] if n["type"] == "MVIC_ICLoRASampler")
    model_link = next(link for link in workflow["links"] if link[3] == sampler["id"] and link[5] == "MODEL")
    reroute_id, primitive_id = workflow["last_node_id"] + 1, workflow["last_node_id"] + 2
    into_reroute, seed_link = workflow["last_link_id"] + 1, workflow["last_link_id"] + 2
    expected = workflow_api.to_api(workflow, plain_definitions)
    # origin -> Reroute -> sampler.model
    origin, origin_slot = model_link[1], model_link[2]
    nodes[origin]["outputs"][origin_slot]["links"] = [into_reroute]
    workflow["links"].append([into_reroute, origin, origin_slot, reroute_id, 0, "MODEL"])
    model_link[1], model_link[2] = reroute_id, 0
    workflow["nodes"].append(
        {
            "id": reroute_id,
            "type": "Reroute",
            "pos": [0, 0],
            "size": [75, 26],
            "mode": 0,
            "inputs": [{"name": "", "type": "*", "link": into_reroute}],
            "outputs": [{"name": "", "type": "MODEL", "links": [model_link[0]]}],
            "properties": {},
        }
    )
    # PrimitiveNode -> sampler.seed
    workflow["nodes"].append(
        {
            "id": primitive_id,
            "type": "PrimitiveNode",
            "pos": [0, 0],
            "size": [210, 82],
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": "INT", "type": "INT", "links": [seed_link], "widget": {"name": "seed"}}],
            "widgets_values": [1234, "fixed"],
            "properties": {"Run widget replace on values": False},
        }
    )
    next(slot for slot in sampler["inputs"] if slot["name"] == "seed")["link"] = seed_link
    seed_slot = next(i for i, slot in enumerate(sampler["inputs"]) if slot["name"] == "seed")
    workflow["links"].append([seed_link, primitive_id, 0, sampler["id"], seed_slot, "INT"])
    api = workflow_api.to_api(workflow, plain_definitions)
    expected[str(sampler["id"])]["inputs"]["seed"] = 1234
    assert api == expected
