"""The `gemini` backend through google-genai: image(s) + prompt + response_schema.

google-genai retries nothing unless asked; we pass `attempts=1` anyway so a future
SDK default cannot add hidden retries under ours. Errors are classified from the
wire error body: `{"error": {"code", "message", "status", "details": [...]}}`.
"""

from __future__ import annotations

import re

from ..annotation import annotation_json_schema
from ..prompt import reask_prompt
from .errors import (
    BlockedError,
    FatalError,
    RejectedError,
    ServerFault,
    TransientError,
    TruncatedError,
    is_connection_error,
    is_timeout,
)
from .request import BackendConfig, ModelReply, ModelRequest, TokenUsage
from .secret import redact

DEFAULT_API_VERSION = "v1beta"
_BLOCK_FINISH_REASONS = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
}
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


def parse_duration(value) -> float | None:
    """google.protobuf.Duration in JSON ('1s', '43.5s') -> seconds."""
    match = _DURATION.match(str(value or ""))
    return float(match.group(1)) if match else None


def _details(body) -> list[dict]:
    error = body.get("error", body) if isinstance(body, dict) else {}
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details or [] if isinstance(d, dict)]


def _of_type(details: list[dict], name: str) -> list[dict]:
    return [d for d in details if str(d.get("@type", "")).endswith(f"google.rpc.{name}")]


def retry_delay_s(details: list[dict]) -> float | None:
    for info in _of_type(details, "RetryInfo"):
        delay = parse_duration(info.get("retryDelay"))
        if delay is not None:
            return delay
    return None


def exhausted_quota(details: list[dict], message: str) -> str:
    """The quota that will not come back within minutes (daily, or a zero limit); '' if none."""
    for failure in _of_type(details, "QuotaFailure"):
        for violation in failure.get("violations") or []:
            quota_id = str(violation.get("quotaId", ""))
            if "PerDay" in quota_id or str(violation.get("quotaValue", "")).strip() == "0":
                return quota_id or str(violation.get("quotaMetric", "a daily quota"))
    if re.search(r"\blimit: 0\b", message or ""):
        return "a zero limit for this model"
    return ""


def classify_api_error(code: int, body, model: str, key_source: str) -> Exception:
    """A wire error -> our error class, with a message that says what to do."""
    details = _details(body)
    error = body.get("error", body) if isinstance(body, dict) else {}
    message = str(error.get("message", "")) if isinstance(error, dict) else str(body)
    status = str(error.get("status", "")) if isinstance(error, dict) else ""
    short = f"{code} {status}: {message}".strip()
    if code == 429:
        quota = exhausted_quota(details, message)
        if quota:
            return FatalError(
                f"Gemini quota exhausted for model {model} ({quota}): it will not reset within minutes. "
                "Wait for the daily reset, choose another model, or enable billing; captions made so far are "
                "cached, re-run to continue."
            )
    if code in _RETRYABLE_STATUS:
        return TransientError(short, retry_delay_s(details), code)
    reasons = {str(d.get("reason", "")) for d in _of_type(details, "ErrorInfo")}
    if code in (401, 403) or "API_KEY_INVALID" in reasons or "API key not valid" in message:
        return FatalError(
            f"Gemini rejected the API key from {key_source or 'the configuration'} ({short}); "
            "check the key set for this endpoint"
        )
    if code == 404:
        return FatalError(
            f"Gemini has no model {model!r} at this endpoint ({short}); "
            "check the model name and the endpoint's base URL"
        )
    return RejectedError(short)


class GeminiBackend:
    name = "gemini"

    def __init__(self, config: BackendConfig, key_source: str = "", stop=None):
        from google import genai
        from google.genai import types

        from .transport import endpoint_client, origin_of

        official = origin_of(config.address)[1] == "generativelanguage.googleapis.com"
        if not config.api_key and official:
            raise ValueError(
                f"endpoint {config.endpoint or 'gemini'!r} needs an API key: for the built-in gemini endpoint set "
                "GEMINI_API_KEY or GOOGLE_API_KEY; for one of yours, `python -m mvic config add-endpoint NAME "
                "--backend gemini --base-url URL --key-env VAR`; or choose the template backend"
            )
        self._types = types
        self._config = config
        self._key_source = key_source
        self._stop = stop
        self.model = config.model_name
        base_url, api_version = config.address, DEFAULT_API_VERSION
        for version in ("v1", "v1beta", "v1alpha"):
            if base_url.endswith("/" + version):  # accept ".../v1beta" as well as the bare host
                base_url, api_version = base_url[: -len(version) - 1], version
        options = types.HttpOptions(
            base_url=base_url + "/",
            api_version=api_version,
            timeout=max(1, int(config.timeout_s * 1000)),
            retry_options=types.HttpRetryOptions(attempts=1),
            httpx_client=endpoint_client(base_url, config.timeout_s),
        )
        # A server of your own may need no key; the SDK wants one anyway (the openai backend does the same).
        api_key = config.api_key.reveal() or "no-key-needed"
        self._client = genai.Client(api_key=api_key, vertexai=False, http_options=options)

    def _contents(self, request: ModelRequest) -> list:
        types = self._types
        parts = [types.Part.from_bytes(data=image.data, mime_type=image.mime_type) for image in request.images]
        contents = [types.Content(role="user", parts=[*parts, types.Part.from_text(text=request.prompt)])]
        if request.reask:
            contents.append(
                types.Content(role="model", parts=[types.Part.from_text(text=request.previous_answer or "(empty)")])
            )
            contents.append(types.Content(role="user", parts=[types.Part.from_text(text=reask_prompt(request.reask))]))
        return contents

    def _generation_config(self, request: ModelRequest):
        types = self._types
        extra = {}
        if self.model.startswith("gemini-2.5-flash"):
            # Captions need no reasoning; thinking tokens are billed as output and eat max_output_tokens.
            extra["thinking_config"] = types.ThinkingConfig(thinking_budget=0)
        return types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=annotation_json_schema(request.schema_panel_count),
            max_output_tokens=request.max_output_tokens,
            temperature=self._config.temperature,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),  # no tools here
            **extra,
        )

    def send(self, request: ModelRequest) -> ModelReply:
        from google.genai import errors

        from .transport import guarded_request

        with guarded_request(self._config.limits, self._stop):
            try:
                response = self._client.models.generate_content(
                    model=self.model, contents=self._contents(request), config=self._generation_config(request)
                )
            except errors.APIError as exc:
                raise classify_api_error(exc.code or 0, exc.details, self.model, self._key_source) from None
            except ValueError as exc:  # a 200 whose body is not JSON, or not the API's JSON
                raise ServerFault(f"the server's answer is not Gemini JSON ({type(exc).__name__})") from None
            except Exception as exc:
                if is_timeout(exc):
                    raise TransientError(f"no answer within {self._config.timeout_s:g} s") from None
                if is_connection_error(exc):
                    detail = redact(str(exc), self._config.api_key)
                    raise TransientError(f"cannot reach the Gemini endpoint: {detail}") from None
                raise
            return self._reply(response)

    def _reply(self, response) -> ModelReply:
        meta = response.usage_metadata
        usage = TokenUsage(
            (meta.prompt_token_count or 0) if meta else 0,
            ((meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)) if meta else 0,
        )
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason:
            reason = getattr(feedback.block_reason, "value", feedback.block_reason)
            raise BlockedError(f"Gemini blocked the prompt ({reason})", usage)
        if not response.candidates:
            raise BlockedError("Gemini returned no answer (no candidates)", usage)
        candidate = response.candidates[0]
        finish = str(getattr(candidate.finish_reason, "value", candidate.finish_reason or ""))
        if finish == "MAX_TOKENS":
            raise TruncatedError("the answer hit max_output_tokens", usage)
        if finish in _BLOCK_FINISH_REASONS:
            raise BlockedError(f"Gemini stopped the answer ({finish})", usage)
        parts = (candidate.content.parts if candidate.content else None) or []
        text = "".join(part.text for part in parts if part.text and not part.thought)
        return ModelReply(text=text, usage=usage)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing is best effort; the run's result is already known
            pass
