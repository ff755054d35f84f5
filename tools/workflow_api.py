"""ComfyUI workflows: UI format (what users drag in) -> API format (what /prompt takes).

    python tools/workflow_api.py                  # write workflows/api/<name>.json for every workflows/<name>.json
    python tools/workflow_api.py --check          # exit 1 when an API file differs from what it would write
    python tools/workflow_api.py --snapshot SRC   # refresh tests/fixtures/object_info_core.json from SRC
                                                  # (a running ComfyUI's URL, or a saved /object_info JSON)
    python tools/workflow_api.py --convert WF.json [--object-info SRC]   # any workflow -> API JSON on stdout

Widget values are matched to input names the way ComfyUI's frontend does it: one
value per widget in INPUT_TYPES order (required, then optional), plus the
frontend-only values that follow some widgets (`control_after_generate` after a
seed-like INT, the upload button after an `image_upload` combo). A workflow saved by an
older or newer frontend, or for another version of a node, converts as the frontend loads it:
values missing at the end take the widgets' defaults, values left over are ignored, and a
control value where the node has none is skipped instead of shifting every later value. Our nodes'
definitions come from the pack itself (loaded by path, as ComfyUI loads it, with ComfyUI's comfy_api
from COMFYUI_DIR; each V3 schema read as /object_info shows it); core
nodes' from a saved /object_info snapshot of just the core nodes the shipped
workflows use. Frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode)
are resolved away.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


class WorkflowError(ValueError):
    pass


# --------------------------------------------------------------------------- node definitions


def load_pack():
    """The pack as ComfyUI imports it: by file path, under its folder name (one copy per process), with its
    nodes. Its V3 nodes need ComfyUI's comfy_api: COMFYUI_DIR names the ComfyUI checkout."""
    comfy_dir = os.environ.get("COMFYUI_DIR", "").strip()
    if comfy_dir and comfy_dir not in sys.path:
        sys.path.append(comfy_dir)
    if PACK_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACK_NAME, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_NAME] = module
        spec.loader.exec_module(module)
    try:
        importlib.import_module(f"{PACK_NAME}.nodes")
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("comfy_api"):
            raise
        raise WorkflowError(
            "our nodes are ComfyUI V3 nodes: set COMFYUI_DIR to a ComfyUI checkout to read them"
        ) from None
    return sys.modules[PACK_NAME]


def our_definitions() -> dict[str, dict]:
    """Our nodes in /object_info's shape (input, input_order, output, output_name, display_name...),
    from each node's V3 schema exactly as ComfyUI's /object_info serves it."""
    definitions = {}
    for key, cls in load_pack().nodes.nodes_by_id().items():
        info = json.loads(json.dumps(cls.GET_NODE_INFO_V1()))
        info["input"] = {part: specs for part, specs in info["input"].items() if part in ("required", "optional")}
        definitions[key] = info
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
    return [
        (name, spec, widget_value_count(name, spec)) for name, spec, _ in ordered_inputs(definition) if is_widget(spec)
    ]


def default_value(spec):
    """A widget's value before any saved value lands on it (the frontend's widget constructors)."""
    options = spec[1] if len(spec) > 1 and spec[1] else {}
    kind = input_type(spec)
    if kind == "COMBO":
        choices = combo_choices(spec) or []
        return options.get("default") or (choices[0] if choices else None)
    return options.get("default", {"INT": 0, "FLOAT": 0, "STRING": "", "BOOLEAN": False}.get(kind))


def migrate_force_inputs(values: list, definition: dict) -> list:
    """The frontend's migrateWidgetsValues: a workflow saved when some inputs that are now
    forceInput sockets were still widgets has a value for each; drop those values. Applied only
    when the count matches that older shape, exactly as the frontend does."""
    specs = ordered_inputs(definition)
    forced = [(name, spec) for name, spec, _ in specs if not is_widget(spec) and _options(spec).get("forceInput")]
    if not forced:
        return values
    older = [(name, spec) for name, spec, _ in specs if is_widget(spec) or (name, spec) in forced]
    if sum(widget_value_count(name, spec) for name, spec in older) != len(values):
        return values
    return [value for (name, spec), value in zip(older, values) if (name, spec) not in forced] + values[len(older) :]


def _options(spec) -> dict:
    return spec[1] if len(spec) > 1 and spec[1] else {}


def _takes_control(spec, count: int) -> bool:
    """Whether the value after this widget's own is a control_after_generate value (not an upload button's)."""
    options = _options(spec)
    return count > 1 and not (input_type(spec) == "COMBO" and any(options.get(key) for key in UPLOAD_OPTIONS))


def _stray_control(values: list, at: int, previous, still_needed: int) -> bool:
    """A control value right after an INT/COMBO widget that has none, while there are values to spare."""
    return (
        previous is not None
        and previous[2] == 1
        and input_type(previous[1]) in ("INT", "COMBO")
        and at < len(values)
        and values[at] in CONTROL_VALUES
        and len(values) - at > still_needed
    )


def _walk(values: list, layout: list[tuple[str, list, int]], where: str, notes: list[str]) -> dict[str, list]:
    """Saved values onto widgets, in order, as the frontend loads them: values missing at the end
    leave widgets at their defaults, values left over at the end are ignored. Where the frontend
    would shift every later value by one (and /prompt would then reject the node), control values
    are matched instead: one the node does not have there is skipped, one the save lacks is missing."""
    out, at = {}, 0
    for index, (name, spec, count) in enumerate(layout):
        previous = layout[index - 1] if index else None
        if _stray_control(values, at, previous, sum(c for _, _, c in layout[index:])):
            notes.append(f"{where}: skipped the control value {values[at]!r} after {previous[0]} (none there now)")
            at += 1
        if at >= len(values):
            out[name] = [default_value(spec)]
            notes.append(f"{where}: no saved value for {name}, default {out[name][0]!r} used (as the frontend does)")
            continue
        out[name] = [values[at]]
        at += 1
        for _ in range(count - 1):
            if at < len(values) and (values[at] in CONTROL_VALUES or not _takes_control(spec, count)):
                out[name].append(values[at])
                at += 1
            elif at < len(values):
                notes.append(f"{where}: the save has no control value after {name}")
    if layout and _stray_control(values, at, layout[-1], 0):
        notes.append(f"{where}: skipped the control value {values[at]!r} after {layout[-1][0]} (none there now)")
        at += 1
    if at < len(values):
        notes.append(f"{where}: ignored {len(values) - at} value(s) the node has no widget for (as the frontend does)")
    return out


def named_widget_values(
    node: dict, definition: dict, strict: bool = False, notes: list[str] | None = None
) -> dict[str, list]:
    """{input name: [its value, then any frontend-only values]} from a UI node's widgets_values.

    `strict`: the values must fit the node exactly (our shipped workflows). Otherwise a workflow
    saved by an older or newer frontend, or for an older or newer version of the node, converts
    the way the frontend loads it (`_walk`); what did not fit exactly is said in `notes`."""
    notes = [] if notes is None else notes
    where = f"node {node['id']} ({node['type']})"
    values = node.get("widgets_values")
    values = [] if values is None else values
    layout = widget_layout(definition)
    if isinstance(values, dict):  # some frontends and nodes save widget values by name
        return {name: [values[name]] if name in values else [default_value(spec)] for name, spec, _ in layout}
    expected = sum(count for _, _, count in layout)
    if strict and len(values) != expected:
        names = ", ".join(f"{name}(+{count - 1})" if count > 1 else name for name, _, count in layout)
        raise WorkflowError(f"{where}: {len(values)} widget values, expected {expected} for {names}")
    found: list[str] = []
    out = _walk(migrate_force_inputs(list(values), definition), layout, where, found)
    if strict and found:
        raise WorkflowError("; ".join(found))
    notes += found
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


def to_api(
    workflow: dict, definitions: dict[str, dict] | None = None, strict: bool = False, notes: list[str] | None = None
) -> dict[str, dict]:
    """API prompt {node id: {inputs, class_type, _meta}} of a UI-format workflow. `strict`: widget values
    must fit exactly (our shipped workflows); else read as the frontend reads them, `notes` on what did not fit."""
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
        widgets = named_widget_values(node, definition, strict, notes)
        linked = {slot["name"]: slot["link"] for slot in node.get("inputs", []) if slot.get("link") is not None}
        inputs = {}
        for name, spec, _ in ordered_inputs(definition):
            if name in linked:
                value = source(linked[name])
                if value is not None:
                    inputs[name] = value
            elif name in widgets:
                value = widgets[name][0]
                inputs[name] = {"__value__": value} if isinstance(value, list) else value  # as the frontend sends lists
        unknown = set(linked) - {name for name, _, _ in ordered_inputs(definition)}
        if unknown:
            raise WorkflowError(f"node {node_id} ({kind}): links into unknown inputs {sorted(unknown)}")
        prompt[str(node_id)] = {
            "inputs": inputs,
            "class_type": kind,
            "_meta": {"title": node.get("title") or definition.get("display_name") or kind},
        }
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
        text = dumps(to_api(json.loads(ui.read_text(encoding="utf-8")), definitions, strict=True))
        target = api_path(ui)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            stale.append(target)
            if not check:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
    return stale


def core_types_used(folder: Path = WORKFLOWS) -> list[str]:
    ours = set(load_pack().nodes.nodes_by_id())
    used = {
        node["type"] for path in ui_workflows(folder) for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]
    }
    return sorted(used - ours - FRONTEND_ONLY)


def read_object_info(source: str) -> dict[str, dict]:
    """Node definitions from a running ComfyUI's URL or a saved /object_info JSON file."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source.rstrip("/") + "/object_info", timeout=60) as response:
            return json.loads(response.read())
    return json.loads(Path(source).read_text(encoding="utf-8"))


def convert_file(path: Path, object_info: str = "") -> tuple[dict, list[str]]:
    """Any UI-format workflow -> (API prompt, notes), with definitions from `object_info` (else ours + the snapshot)."""
    definitions = {**all_definitions(), **(read_object_info(object_info) if object_info else {})}
    notes: list[str] = []
    return to_api(json.loads(Path(path).read_text(encoding="utf-8")), definitions, notes=notes), notes


def write_core_snapshot(source: str) -> Path:
    """Keep only the core nodes the shipped workflows use, from a live server or a saved /object_info."""
    info = read_object_info(source)
    wanted = core_types_used()
    missing = [name for name in wanted if name not in info]
    if missing:
        raise WorkflowError(f"{source} has no definition for {missing}")
    CORE_SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    CORE_SNAPSHOT.write_text(
        json.dumps({name: info[name] for name in wanted}, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return CORE_SNAPSHOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report API files that are out of date")
    parser.add_argument(
        "--snapshot",
        metavar="SRC",
        help="refresh the core-node snapshot from a ComfyUI URL or an /object_info JSON file",
    )
    parser.add_argument("--convert", metavar="WORKFLOW", help="print the API form of any UI workflow (notes on stderr)")
    parser.add_argument(
        "--object-info",
        metavar="SRC",
        default="",
        help="with --convert: node definitions from a ComfyUI URL or an /object_info JSON file",
    )
    args = parser.parse_args(argv)
    if args.convert:
        try:
            prompt, notes = convert_file(Path(args.convert), args.object_info)
        except (WorkflowError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        sys.stdout.write(dumps(prompt))
        return 0
    if args.snapshot:
        print(f"wrote {write_core_snapshot(args.snapshot)}")
    stale = convert_all(check=args.check)
    for path in stale:
        print(("out of date: " if args.check else "wrote ") + str(path.relative_to(ROOT)))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
