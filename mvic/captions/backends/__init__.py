"""Model backends behind one interface (`request.ModelBackend`): gemini (google-genai) and
openai-compatible (openai). The offline `template` backend is `captions.template`.

secret.py (API keys), request.py (config, request and reply types), errors.py (error taxonomy),
sdk.py (early SDK import), transport.py (the guarded HTTP client); `make_backend` picks one."""

from __future__ import annotations

from .request import BackendConfig, ModelBackend


def make_backend(config: BackendConfig, key_source: str = "", stop=None) -> ModelBackend:
    """The SDKs are imported here, on first use: the template backend needs neither.
    `stop` (a threading.Event) ends requests in flight within a fraction of a second."""
    if config.backend == "gemini":
        from .gemini import GeminiBackend

        return GeminiBackend(config, key_source, stop)
    if config.backend == "openai-compatible":
        from .openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(config, key_source, stop)
    raise ValueError(f"backend {config.backend!r} is not a model backend; choose gemini or openai-compatible")
