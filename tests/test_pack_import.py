"""Acceptance 1: the pack imports the way ComfyUI imports it, light and self-contained."""
import subprocess
import sys
import textwrap

from packload import PACK_NAME, ROOT, pack

EXPECTED = {
    "MVIC_MultiViewLoader": "MultiViewLoader",
    "MVIC_CompositeGrid": "CompositeGrid",
    "MVIC_SaveICLoRADataset": "SaveICLoRADataset",
    "MVIC_SplitComposite": "SplitComposite",
    "MVIC_ConsistencyScore": "ConsistencyScore",
}

# Runs in a fresh interpreter where importing torch is impossible, as in an
# environment that has only requirements.txt installed.
IMPORT_WITHOUT_TORCH = textwrap.dedent(
    f"""
    import importlib.abc, importlib.util, json, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "comfy", "folder_paths"):
                raise ImportError(f"{{name}} is not installed here")
            return None

    sys.meta_path.insert(0, NoTorch())
    spec = importlib.util.spec_from_file_location({PACK_NAME!r}, {str(ROOT / "__init__.py")!r},
                                                  submodule_search_locations=[{str(ROOT)!r}])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    print(json.dumps({{
        "nodes": module.NODE_CLASS_MAPPINGS and sorted(module.NODE_CLASS_MAPPINGS),
        "display": module.NODE_DISPLAY_NAME_MAPPINGS,
        "torch": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")),
        "top_level_mvic": "mvic" in sys.modules,
        "inputs_ok": all(isinstance(c.INPUT_TYPES(), dict) for c in module.NODE_CLASS_MAPPINGS.values()),
    }}))
    """
)


def test_pack_imports_by_path_without_torch_and_registers_nodes():
    import json

    out = subprocess.run([sys.executable, "-c", IMPORT_WITHOUT_TORCH], capture_output=True, text=True, cwd="/", timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(EXPECTED) <= set(result["nodes"])
    for key, display in EXPECTED.items():
        assert result["display"][key] == display
    assert all(key.startswith("MVIC_") for key in result["nodes"])
    assert result["torch"] == []
    assert result["top_level_mvic"] is False
    assert result["inputs_ok"]


def test_node_declarations_are_consistent():
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert len(cls.RETURN_TYPES) == len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)), key
        assert callable(getattr(cls, cls.FUNCTION)), key
        assert cls.CATEGORY == "MultiView ICLoRA"


def test_one_copy_of_the_core_in_the_test_process():
    assert "mvic" not in sys.modules  # tests use <pack>.mvic only, like ComfyUI
    init = str(ROOT / "__init__.py")
    copies = [name for name, module in list(sys.modules.items()) if getattr(module, "__file__", None) == init]
    assert copies == [PACK_NAME]  # pytest did not import the pack root a second time
    loader_module = sys.modules[pack.NODE_CLASS_MAPPINGS["MVIC_MultiViewLoader"].__module__]
    assert loader_module.__name__.startswith(PACK_NAME + ".nodes")


def test_cli_imports_core_alone():
    code = "import sys, mvic.cli; bad=[m for m in sys.modules if m=='nodes' or m.startswith('nodes.') or m=='torch']; print(bad); sys.exit(1 if bad else 0)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_requirements_never_install_torch():
    names = [line.split("#")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert not [n for n in names if n.startswith(("torch", "torchvision", "torchaudio"))]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[tool.comfy]" in pyproject and "torch" not in pyproject.split("dependencies", 1)[1].split("\n", 1)[0]
