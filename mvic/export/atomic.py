"""Atomic writes now live in mvic/files.py; kept so existing imports work."""
from ..files import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text"]
