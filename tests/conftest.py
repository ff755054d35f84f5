import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comfy_harness import ComfyServer, comfyui_paths  # noqa: E402


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory):
    """A running real ComfyUI with this pack installed (skips when COMFYUI_DIR is unset)."""
    paths = comfyui_paths()
    if paths is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout to run it")
    server = ComfyServer(*paths, base_dir=tmp_path_factory.mktemp("comfy_base"))
    server.start()
    yield server
    server.stop()
