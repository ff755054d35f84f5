"""API keys: read only from the sources an endpoint's local settings name, never shown in a repr or log."""

from __future__ import annotations

import os
from pathlib import Path

# The names a key file's .env-style lines may use, when the endpoint names no variables of its own.
CONVENTIONAL_KEY_NAMES = {"gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "openai-compatible": ("OPENAI_API_KEY",)}


class Secret:
    """An API key that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(self):  # no pickling the key into a cache or a ComfyUI history entry
        raise TypeError("an API key is not picklable")

    def __copy__(self) -> "Secret":
        return self

    def __deepcopy__(self, memo) -> "Secret":
        return self


def redact(text: str, secret: Secret | None) -> str:
    """Belt and braces for messages that quote SDK exceptions."""
    value = secret.reveal() if secret else ""
    return text.replace(value, "***") if len(value) >= 4 else text


def _key_from_file(text: str, names: tuple[str, ...]) -> str:
    """The file holds only the key, or .env-style lines such as `GEMINI_API_KEY=...`."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) == 1 and "=" not in lines[0]:
        return lines[0]
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        if name.strip() in names:
            return value.strip().strip("'\"")
    return ""


def endpoint_key(endpoint) -> tuple[Secret, str]:
    """(key, where it came from) for a locally configured endpoint (mvic.settings.Endpoint).
    Only the key sources named in that endpoint's own settings are read: an environment
    key is never sent to an endpoint it was not configured for. The key file wins."""
    if endpoint.key_file.strip():
        path = Path(endpoint.key_file.strip()).expanduser()
        names = endpoint.key_env or CONVENTIONAL_KEY_NAMES.get(endpoint.backend, ("API_KEY",))
        try:
            value = _key_from_file(path.read_text(encoding="utf-8"), names)
        except OSError as exc:
            raise ValueError(
                f"endpoint {endpoint.name!r}: cannot read its key file {path} ({exc.strerror}); fix it with "
                f"`python -m mvic config add-endpoint {endpoint.name} --key-file FILE ...`"
            ) from None
        if not value:
            raise ValueError(
                f"endpoint {endpoint.name!r}: key file {path} holds no key: write only the key in it, "
                f"or a line {' or '.join(names)}=..."
            )
        return Secret(value), f"key file {path}"
    for name in endpoint.key_env:
        value = os.environ.get(name, "").strip()
        if value:
            return Secret(value), f"${name}"
    return Secret(""), ""
