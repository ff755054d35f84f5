"""Importing a backend's SDK ahead of time, off the critical path."""

from __future__ import annotations

SDK_MODULES = {
    "gemini": ("google.genai", "google.genai.types", "google.genai.errors"),
    "openai-compatible": ("openai",),
}


def import_sdk(backend: str) -> None:
    """Import the backend's SDK (about 0.4 s) without making a client: no key, no network.
    Run in a background thread at the start of a run, it overlaps hashing and encoding."""
    import importlib

    for name in SDK_MODULES.get(backend, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            return  # make_backend reports it, with the package to install
