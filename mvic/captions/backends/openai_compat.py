"""The `openai-compatible` backend through the openai SDK: chat completions with
data-URI images and a JSON-schema response format. Ollama, vLLM, LM Studio and
OpenAI itself speak it; an endpoint's base_url is the server's `/v1`.

`max_retries=0`: the openai SDK retries twice by default, which would multiply
requests under our own retry loop.
"""

from __future__ import annotations

import base64
import email.utils
import time

from ..annotation import annotation_json_schema
from ..prompt import reask_prompt
from .errors import BlockedError, FatalError, RejectedError, ServerFault, TransientError, TruncatedError, is_timeout
from .request import BackendConfig, ModelReply, ModelRequest, TokenUsage
from .secret import redact

# Local servers ignore the key, but the SDK refuses to start without one.
_NO_KEY_PLACEHOLDER = "no-key-needed"


def retry_after_s(headers) -> float | None:
    """`retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if headers is None:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000.0
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class OpenAICompatibleBackend:
    name = "openai-compatible"

    def __init__(self, config: BackendConfig, key_source: str = "", stop=None):
        import openai

        from .transport import endpoint_client, origin_of

        self._official = origin_of(config.address)[1] == "api.openai.com"
        if not config.api_key and self._official:
            raise ValueError(
                f"endpoint {config.endpoint or 'openai'!r} (api.openai.com) needs a key: set OPENAI_API_KEY. "
                "For a local server (Ollama, vLLM, LM Studio) add it on this machine: "
                "`python -m mvic config add-endpoint ollama --base-url http://127.0.0.1:11434/v1`"
            )
        self._config = config
        self._key_source = key_source
        self._stop = stop
        self.model = config.model_name
        self._client = openai.OpenAI(
            api_key=config.api_key.reveal() or _NO_KEY_PLACEHOLDER,
            base_url=config.address,
            max_retries=0,
            timeout=config.timeout_s,
            http_client=endpoint_client(config.address, config.timeout_s),
        )

    def _messages(self, request: ModelRequest) -> list[dict]:
        content: list[dict] = [{"type": "text", "text": request.prompt}]
        for image in request.images:
            encoded = base64.b64encode(image.data).decode("ascii")
            content.append({"type": "image_url", "image_url": {"url": f"data:{image.mime_type};base64,{encoded}"}})
        messages = [{"role": "user", "content": content}]
        if request.reask:
            messages.append({"role": "assistant", "content": request.previous_answer or "(empty)"})
            messages.append({"role": "user", "content": reask_prompt(request.reask)})
        return messages

    def send(self, request: ModelRequest) -> ModelReply:
        import openai

        from .transport import guarded_request

        # OpenAI's newer models accept only max_completion_tokens; most local servers only max_tokens.
        limit = {"max_completion_tokens" if self._official else "max_tokens": request.max_output_tokens}
        schema = annotation_json_schema(request.schema_panel_count, strict=True)
        json_schema = {"name": "multiview_annotation", "schema": schema, "strict": True}
        response_format = {"type": "json_schema", "json_schema": json_schema}
        with guarded_request(self._config.limits, self._stop):
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=self._messages(request),
                    temperature=self._config.temperature,
                    response_format=response_format,
                    **limit,
                )
            except openai.APIStatusError as exc:
                raise self._classify(exc) from None
            except openai.APIConnectionError as exc:
                if is_timeout(exc):
                    raise TransientError(f"no answer within {self._config.timeout_s:g} s") from None
                detail = redact(str(exc), self._config.api_key)
                raise TransientError(f"cannot reach {self._client.base_url}: {detail}") from None
            except (openai.APIResponseValidationError, ValueError) as exc:  # a 200 whose body is not the API's JSON
                raise ServerFault(f"the server's answer is not chat-completion JSON ({type(exc).__name__})") from None
            return self._reply(response)

    def _classify(self, exc) -> Exception:
        code = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        message = redact(str(body.get("message") or exc.message), self._config.api_key)
        short = f"{code}: {message}"
        if code == 429 and (exc.code == "insufficient_quota" or "quota" in str(body.get("type", ""))):
            return FatalError(
                f"the server says the quota for {self.model} is used up ({short}); add credit or wait, then re-run "
                "(finished captions are cached)"
            )
        if code in (408, 409, 429) or code >= 500:
            return TransientError(short, retry_after_s(exc.response.headers), code)
        if code in (401, 403):
            source = self._key_source or "the configuration"
            return FatalError(
                f"the server rejected the API key from {source} ({short}); "
                f"check the key configured for endpoint {self._config.endpoint!r}"
            )
        if code == 404:
            return FatalError(
                f"no model {self.model!r} or no /chat/completions at {self._client.base_url} ({short}); "
                "check the model name and the endpoint's base URL"
            )
        return RejectedError(short)

    def _reply(self, response) -> ModelReply:
        usage = TokenUsage(
            int(getattr(response.usage, "prompt_tokens", 0) or 0),
            int(getattr(response.usage, "completion_tokens", 0) or 0),
        )
        if not response.choices:
            raise BlockedError("the server returned no choices", usage)
        choice = response.choices[0]
        if choice.finish_reason == "length":
            raise TruncatedError("the answer hit max_tokens", usage)
        if choice.finish_reason == "content_filter":
            raise BlockedError("the server's content filter stopped the answer", usage)
        refusal = getattr(choice.message, "refusal", None)
        if refusal:
            raise BlockedError(f"the model refused: {refusal}", usage)
        return ModelReply(text=choice.message.content or "", usage=usage)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # best effort, as in the gemini backend
            pass
