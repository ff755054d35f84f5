"""ComfyUI workflows: UI format (what users drag in) -> API format (what /prompt takes).

    python tools/workflow_api.py                  # write workflows/api/<name>.json for every workflows/<name>.json
    python tools/workflow_api.py --check          # exit 1 when an API file differs from what it would write
    python tools/workflow_api.py --snapshot SRC   # refresh tests/fixtures/object_info_core.json from SRC
                                                  # (a running ComfyUI's URL, or a saved /object_info JSON)

Widget values are matched to input names the way ComfyUI's frontend does it: one
value per widget in INPUT_TYPES order (required, then optional), plus the
frontend-only values that follow some widgets (`control_after_generate` after a
seed-like INT, the upload button after an `image_upload` combo). Our nodes'
INPUT_TYPES come from the pack itself (loaded by path, as ComfyUI loads it); core
nodes' from a saved /object_info snapshot of just the core nodes the shipped
workflows use. Frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode)
are resolved away.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-MultiView-ICLoRA"
WORKFLOWS = ROOT / "workflows"
API_DIR = WORKFLOWS / "api"
CORE_SNAPSHOT = ROOT / "tests" / "fixtures" / "object_info_core.json"

FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
SEED_NAMES = ("seed", "noise_seed")  # the frontend adds control_after_generate to these by name
UPLOAD_OPTIONS = ("image_upload", "animated_image_upload", "video_upload", "audio_upload")
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4


class WorkflowError(ValueError):
    pass


# --------------------------------------------------------------------------- node definitions


def load_pack():
    """The pack as ComfyUI imports it: by file path, under its folder name (one copy per process)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def _spec_list(spec) -> list:
    return [spec[0], dict(spec[1]) if len(spec) > 1 and spec[1] else {}]


def our_definitions() -> dict[str, dict]:
    """Our nodes in /object_info's shape (input, input_order, output, output_name, display_name)."""
    pack = load_pack()
    definitions = {}
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        types = cls.INPUT_TYPES()
        section = {part: {name: _spec_list(spec) for name, spec in types.get(part, {}).items()} for part in ("required", "optional")}
        definitions[key] = {
            "input": {part: specs for part, specs in section.items() if specs},
            "input_order": {part: list(specs) for part, specs in section.items() if specs},
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES),
            "display_name": pack.NODE_DISPLAY_NAME_MAPPINGS.get(key, key),
            "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
        }
    return definitions


def core_definitions(path: Path = CORE_SNAPSHOT) -> dict[str, dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def all_definitions() -> dict[str, dict]:
    return {**core_definitions(), **our_definitions()}


def ordered_inputs(definition: dict) -> list[tuple[str, list, bool]]:
    """(name, spec, optional) in the order the frontend creates widgets and sockets."""
    out = []
    for part in ("required", "optional"):
        specs = definition.get("input", {}).get(part, {})
        order = definition.get("input_order", {}).get(part) or list(specs)
        out += [(name, specs[name], part == "optional") for name in order if name in specs]
    return out


def input_type(spec) -> str:
    kind = spec[0]
    return "COMBO" if isinstance(kind, list) else kind


def combo_choices(spec) -> list | None:
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO":
        return list((spec[1] or {}).get("options", []))
    return None


def is_widget(spec) -> bool:
    options = spec[1] if len(spec) > 1 and spec[1] else {}
    return input_type(spec) in WIDGET_TYPES and not options.get("forceInput", False)


def widget_value_count(name: str, spec) -> int:
    """Values a widget input takes in widgets_values (the frontend's rules, frontend 1.35)."""
    options = spec[1] if len(spec) > 1 and spec[1] else {}
    count = 1
    control = options.get("control_after_generate")
    if input_type(spec) == "INT" and (control if control is not None else name in SEED_NAMES):
        count += 1
    elif input_type(spec) == "COMBO" and control:
        count += 1
    if input_type(spec) == "COMBO" and any(options.get(key) for key in UPLOAD_OPTIONS):
        count += 1
    return count


def widget_layout(definition: dict) -> list[tuple[str, list, int]]:
    """(input name, spec, number of widgets_values it takes) for every widget input, in order."""
    return [(name, spec, widget_value_count(name, spec)) for name, spec, _ in ordered_inputs(definition) if is_widget(spec)]


def widget_default(spec) -> object:
    """The value a widget starts with in the frontend: its default, else a combo's first choice."""
    options = spec[1] if len(spec) > 1 and spec[1] else {}
    if "default" in options:
        return options["default"]
    choices = combo_choices(spec)
    return choices[0] if choices else {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(input_type(spec))


def named_widget_values(node: dict, definition: dict, fill_defaults: bool = False) -> dict[str, list]:
    """{input name: [its value, then any frontend-only values]} from a UI node's widgets_values.
    `fill_defaults`: a workflow saved before widgets were added at the end has fewer values; the
    frontend then leaves those widgets at their defaults (old saved workflows, never shipped ones)."""
    values = node.get("widgets_values")
    values = [] if values is None else values
    if isinstance(values, dict):
        raise WorkflowError(f"node {node['id']} ({node['type']}): widgets_values as a dict is not supported")
    layout = widget_layout(definition)
    expected = sum(count for _, _, count in layout)
    if fill_defaults and len(values) < expected:
        values, at = list(values), 0
        for name, spec, count in layout:
            if at >= len(values):
                values += [widget_default(spec)] + ["fixed"] * (count - 1)
            at += count
    if len(values) != expected:
        names = ", ".join(f"{name}(+{count - 1})" if count > 1 else name for name, _, count in layout)
        raise WorkflowError(f"node {node['id']} ({node['type']}): {len(values)} widget values, expected {expected} for {names}")
    out, at = {}, 0
    for name, _, count in layout:
        out[name] = list(values[at : at + count])
        at += count
    return out


# --------------------------------------------------------------------------- conversion


def _links(workflow: dict) -> dict[int, dict]:
    table = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            entry = {k: link[k] for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")}
        else:
            entry = dict(zip(("id", "origin_id", "origin_slot", "target_id", "target_slot", "type"), link))
        table[entry["id"]] = entry
    return table


def to_api(workflow: dict, definitions: dict[str, dict] | None = None, fill_defaults: bool = False) -> dict[str, dict]:
    """API prompt {node id: {inputs, class_type, _meta}} of a UI-format workflow (`fill_defaults`:
    see named_widget_values)."""
    definitions = all_definitions() if definitions is None else definitions
    if workflow.get("definitions", {}).get("subgraphs"):
        raise WorkflowError("subgraphs are not supported")
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links(workflow)

    def source(link_id: int, seen: tuple = ()):
        """A link's value in API form: [node id, output slot], or a PrimitiveNode's value."""
        link = links.get(link_id)
        if link is None:
            raise WorkflowError(f"link {link_id} is not in the links table")
        origin = nodes.get(link["origin_id"])
        if origin is None:
            raise WorkflowError(f"link {link_id} starts at missing node {link['origin_id']}")
        if origin["type"] == "Reroute":
            upstream = (origin.get("inputs") or [{}])[0].get("link")
            if upstream is None or upstream in seen:
                return None
            return source(upstream, seen + (link_id,))
        if origin["type"] == "PrimitiveNode":
            return (origin.get("widgets_values") or [None])[0]
        if origin.get("mode", MODE_ALWAYS) == MODE_BYPASS:
            raise WorkflowError(f"node {origin['id']} ({origin['type']}) is bypassed: not supported")
        if origin.get("mode", MODE_ALWAYS) == MODE_NEVER:
            return None
        return [str(origin["id"]), link["origin_slot"]]

    prompt = {}
    for node_id in sorted(nodes):
        node = nodes[node_id]
        kind = node["type"]
        if kind in FRONTEND_ONLY or node.get("mode", MODE_ALWAYS) == MODE_NEVER:
            continue
        if node.get("mode", MODE_ALWAYS) == MODE_BYPASS:
            raise WorkflowError(f"node {node_id} ({kind}) is bypassed: not supported")
        definition = definitions.get(kind)
        if definition is None:
            raise WorkflowError(f"node {node_id}: unknown node type {kind!r}")
        widgets = named_widget_values(node, definition, fill_defaults)
        linked = {slot["name"]: slot["link"] for slot in node.get("inputs", []) if slot.get("link") is not None}
        inputs = {}
        for name, spec, _ in ordered_inputs(definition):
            if name in linked:
                value = source(linked[name])
                if value is not None:
                    inputs[name] = value
            elif name in widgets:
                inputs[name] = widgets[name][0]
        unknown = set(linked) - {name for name, _, _ in ordered_inputs(definition)}
        if unknown:
            raise WorkflowError(f"node {node_id} ({kind}): links into unknown inputs {sorted(unknown)}")
        prompt[str(node_id)] = {"inputs": inputs, "class_type": kind, "_meta": {"title": node.get("title") or definition.get("display_name", kind)}}
    return prompt


# --------------------------------------------------------------------------- files


def ui_workflows(folder: Path = WORKFLOWS) -> list[Path]:
    return sorted(folder.glob("*.json"))


def api_path(ui_path: Path) -> Path:
    return ui_path.parent / "api" / ui_path.name


def dumps(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def convert_all(check: bool = False) -> list[Path]:
    """Write (or, with check, compare) every API file; returns the ones out of date."""
    definitions = all_definitions()
    stale = []
    for ui in ui_workflows():
        text = dumps(to_api(json.loads(ui.read_text(encoding="utf-8")), definitions))
        target = api_path(ui)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    return stale


def core_types_used(folder: Path = WORKFLOWS) -> list[str]:
    ours = set(load_pack().NODE_CLASS_MAPPINGS)
    used = {node["type"] for path in ui_workflows(folder) for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]}
    return sorted(used - ours - FRONTEND_ONLY)


def write_core_snapshot(source: str) -> Path:
    """Keep only the core nodes the shipped workflows use, from a live server or a saved /object_info."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source.rstrip("/") + "/object_info", timeout=60) as response:
            info = json.loads(response.read())
    else:
        info = json.loads(Path(source).read_text(encoding="utf-8"))
    wanted = core_types_used()
    missing = [name for name in wanted if name not in info]
    if missing:
        raise WorkflowError(f"{source} has no definition for {missing}")
    CORE_SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    CORE_SNAPSHOT.write_text(json.dumps({name: info[name] for name in wanted}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return CORE_SNAPSHOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report API files that are out of date")
    parser.add_argument("--snapshot", metavar="SRC", help="refresh the core-node snapshot from a ComfyUI URL or an /object_info JSON file")
    args = parser.parse_args(argv)
    if args.snapshot:
        print(f"wrote {write_core_snapshot(args.snapshot)}")
    stale = convert_all(check=args.check)
    for path in stale:
        print(("out of date: " if args.check else "wrote ") + str(path.relative_to(ROOT)))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
