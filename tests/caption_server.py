"""A local HTTP server that speaks the Gemini and OpenAI wire protocols, for the
captioner tests and benchmark. The real google-genai and openai SDKs talk to it.

- Gemini: `POST /{v1,v1beta}/models/{model}:generateContent`, key in `x-goog-api-key`,
  images as `inlineData` / `inline_data` with `mimeType` / `mime_type` and URL-safe
  base64; answers `candidates[0].content.parts[].text` + `usageMetadata`; errors
  `{"error": {"code", "message", "status", "details": [...]}}`.
- OpenAI: `POST /v1/chat/completions`, `Authorization: Bearer`, data-URI images.

Each request takes the next reply from `script`, then `default` (a valid answer for
the panel count the request's response schema asks for). The server counts every
request and how many were in flight at once, and keeps every POST's headers. Bound to
127.0.0.1, port 0.

Hostile modes (issue 10), each on the real wire: `trickle(interval)` sends a valid answer
one byte at a time (status line and headers included); `huge(size)` a 200 whose JSON is
padded to `size` bytes (`gzip=True`: the same compressed, a decompression bomb);
`non_json()` a 200 whose body is an HTML error page; `hostile_text()` a valid answer
whose strings hold NUL, ESC, DEL, C1 and bidi controls and a 120 KB summary. For the
streamed modes `stream_log` records how many bytes went out before the client hung up.

Run alone (for the benchmark): `python tests/caption_server.py --latency 0.5`
prints `PORT <n>`; `GET /_stats` returns the counts as JSON.
"""

from __future__ import annotations

import argparse
import base64
import collections
import gzip
import hashlib
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GEMINI_PATH = re.compile(r"^/(v1|v1beta)/models/([^/:]+):generateContent$")
OPENAI_PATH = "/v1/chat/completions"
URLSAFE_B64 = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
STANDARD_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
HEADER_CHARS = 1 << 16  # base64 characters decoded to read a JPEG's size: its header comes first
USAGE = {"input": 1290, "output": 180}


@dataclass
class Reply:
    """What the server sends for one request. kind: ok, answer, error, blocked, max_tokens,
    trickle, huge, non_json, hostile_text."""

    kind: str = "ok"
    text: str = ""  # the model's answer text for kind "answer" (malformed JSON etc.)
    status: int = 200
    error_status: str = ""
    message: str = ""
    details: list = field(default_factory=list)
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0
    openai_code: str = ""
    interval_s: float = 0.0  # trickle: seconds between bytes
    size: int = 0  # huge: body bytes (before compression)
    gzip: bool = False


def ok(delay_s: float = 0.0) -> Reply:
    return Reply("ok", delay_s=delay_s)


def answer(text: str) -> Reply:
    return Reply("answer", text=text)


def error(status: int, error_status: str, message: str, details=(), headers=None, openai_code: str = "") -> Reply:
    return Reply(
        "error",
        status=status,
        error_status=error_status,
        message=message,
        details=list(details),
        headers=dict(headers or {}),
        openai_code=openai_code,
    )


def retry_info(seconds: float) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds:g}s"}


def quota_failure(quota_id: str, value: str = "10") -> dict:
    violation = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
        "quotaValue": value,
    }
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]}


def rate_limited(retry_delay_s: float | None = None) -> Reply:
    details = [quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")]
    if retry_delay_s is not None:
        details.append(retry_info(retry_delay_s))
    headers = {"Retry-After": f"{retry_delay_s:g}"} if retry_delay_s is not None else {}
    return error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        details,
        headers,
    )


def quota_exhausted() -> Reply:
    # Real daily-quota 429s carry a RetryInfo too; the client must stop anyway.
    details = [quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "250"), retry_info(43)]
    return error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        details,
        openai_code="insufficient_quota",
    )


def server_error(status: int = 500) -> Reply:
    return error(
        status,
        "INTERNAL" if status == 500 else "UNAVAILABLE",
        "An internal error has occurred. Please retry or report.",
    )


def blocked() -> Reply:  # Gemini: promptFeedback.blockReason; OpenAI: finish_reason content_filter
    return Reply("blocked")


def max_tokens() -> Reply:  # a third of a valid answer, finishReason MAX_TOKENS / finish_reason length
    return Reply("max_tokens")


def trickle(interval_s: float) -> Reply:
    """A valid answer, one byte every `interval_s` seconds: every read is answered in time."""
    return Reply("trickle", interval_s=interval_s)


def huge(size: int, gzip: bool = False) -> Reply:
    """A 200 whose valid JSON answer is padded with whitespace to `size` bytes (gzip: sent compressed)."""
    return Reply("huge", size=size, gzip=gzip)


def non_json() -> Reply:
    """A 200 whose body is an HTML page (a proxy's error page), labelled as such."""
    return Reply("non_json")


def hostile_text() -> Reply:
    """A schema-valid answer whose strings carry control characters and a 120 KB summary."""
    return Reply("hostile_text")


# NUL, ESC c (terminal reset), BEL, DEL, C1 CSI, bidi override, CRLF
CONTROL_SAMPLE = "\x00\x1bc\x07\x7f\x9b31m\u202e\r\n"


def hostile_annotation(panel_count: int) -> dict:
    data = valid_annotation(panel_count, object_name=f"red{CONTROL_SAMPLE} mug")
    data["summary"] = f"A mug{CONTROL_SAMPLE} " + "photographed again and again " * 4300  # ~120 KB
    for panel in data["panels"]:
        panel["visible_features"] = [f"handle{CONTROL_SAMPLE}", "glaze " * 500]
    return data


def valid_annotation(panel_count: int, object_name: str = "red ceramic mug") -> dict:
    views = [("front", "none"), ("side", "left"), ("back", "none"), ("front_three_quarter", "right")]
    panels = []
    for n in range(1, panel_count + 1):
        view, side = views[(n - 1) % len(views)]
        panels.append(
            {
                "panel": n,
                "horizontal_view": view,
                "side": side,
                "vertical_angle": "eye_level" if n % 2 else "high_angle",
                "framing": "full_object",
                "visible_features": ["handle", f"glaze detail {n}"],
                "confidence": 0.9,
            }
        )
    return {
        "object_name": object_name,
        "summary": f"A {object_name} photographed from {panel_count} angles",
        "panels": panels,
    }


@dataclass
class SeenRequest:
    protocol: str  # "gemini" or "openai"
    path: str
    model: str
    prompt: str
    turns: int  # 1, or 3 on a re-ask (user, model, user)
    image_sha256: tuple[str, ...]  # of each image as sent (its base64 text): counts repeats
    image_sizes: tuple[tuple[int, int], ...]
    max_output_tokens: int | None
    panel_count: int
    at: float


def _panel_count(schema) -> int:
    panels = ((schema or {}).get("properties") or {}).get("panels") or {}
    return int(panels.get("minItems") or panels.get("min_items") or 0)


def _google_error(code: int, message: str, status: str, details=()) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    if not data.startswith(b"\xff\xd8\xff"):
        raise ValueError("image is not a JPEG")
    return Image.open(io.BytesIO(data)).size  # reads the header only


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the benchmark opens many connections at once


class CaptionServer:
    def __init__(
        self,
        script=(),
        default: Reply | None = None,
        latency_s: float = 0.0,
        api_key: str = "",
        keep_bodies: bool = False,
    ):
        self.script = list(script)
        self.default = default or ok()
        self.latency_s = latency_s
        self.api_key = api_key
        self.keep_bodies = keep_bodies
        self.requests: list[SeenRequest] = []
        self.bodies: list[dict] = []
        self.headers: list[dict] = []  # every POST's headers (names lower-cased), also those refused for a bad key
        self.stream_log: list[dict] = []  # trickle / huge replies: bytes sent, when the client hung up
        self.posts = 0  # every POST, also those refused for a bad key or a bad body
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> "CaptionServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "CaptionServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _ThreadingServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, args=(0.02,), name="caption-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    @property
    def count(self) -> int:
        return self.posts

    def stats(self) -> dict:
        per_image = collections.Counter(digest for seen in self.requests for digest in seen.image_sha256)
        return {
            "count": self.count,
            "max_in_flight": self.max_in_flight,
            "distinct_images": len(per_image),
            "max_requests_per_image": max(per_image.values(), default=0),
            "arrivals": [seen.at for seen in self.requests],  # time.monotonic(), comparable across processes on Linux
        }

    # -- one request -------------------------------------------------------------------
    def _next_reply(self) -> Reply:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _record(self, seen: SeenRequest, body: dict) -> None:
        with self._lock:
            self.requests.append(seen)
            if self.keep_bodies:
                self.bodies.append(body)


class _Handler(BaseHTTPRequestHandler):
    owner: CaptionServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms a request), a stall no real API server has.
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, payload, headers=None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def do_GET(self) -> None:
        if self.path == "/_stats":
            self._send(200, self.owner.stats())
        else:
            self._send(404, _google_error(404, "not found", "NOT_FOUND"))

    def do_POST(self) -> None:
        self.arrived = time.monotonic()  # latency counts from here: parsing the body is part of it
        owner = self.owner
        with owner._lock:
            owner.posts += 1
            owner.headers.append({name.lower(): value for name, value in self.headers.items()})
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            gemini = GEMINI_PATH.match(self.path)
            if gemini:
                self._gemini(body, gemini.group(2))
            elif self.path == OPENAI_PATH:
                self._openai(body)
            else:
                self._send(404, _google_error(404, f"no route {self.path}", "NOT_FOUND"))
        finally:
            with owner._lock:
                owner.in_flight -= 1

    def _reply_after_latency(self, seen: SeenRequest, body: dict) -> Reply:
        self.owner._record(seen, body)
        reply = self.owner._next_reply()
        time.sleep(max(0.0, self.owner.latency_s + reply.delay_s - (time.monotonic() - self.arrived)))
        return reply

    # -- Gemini ------------------------------------------------------------------------
    def _gemini(self, body: dict, model: str) -> None:
        if self.owner.api_key and self.headers.get("x-goog-api-key") != self.owner.api_key:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
            return self._send(
                400, _google_error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [info])
            )
        contents = body.get("contents") or []
        texts, images = [], []
        for content in contents[:1]:
            for part in content.get("parts") or []:
                inline = part.get("inlineData") or part.get("inline_data")
                if inline:
                    data = inline.get("data", "")
                    mime = inline.get("mimeType") or inline.get("mime_type")
                    if mime != "image/jpeg" or not URLSAFE_B64.match(data):
                        return self._send(
                            400, _google_error(400, "inlineData must be URL-safe base64 image/jpeg", "INVALID_ARGUMENT")
                        )
                    images.append((data, base64.urlsafe_b64decode))
                elif "text" in part:
                    texts.append(part["text"])
        config = body.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        seen = self._seen(
            "gemini", model, texts, images, len(contents), config.get("maxOutputTokens"), _panel_count(schema)
        )
        if seen is None:
            return
        reply = self._reply_after_latency(seen, body)
        usage = {
            "promptTokenCount": USAGE["input"],
            "candidatesTokenCount": USAGE["output"],
            "totalTokenCount": sum(USAGE.values()),
        }

        def envelope(text: str) -> dict:
            candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
            return {"candidates": [candidate], "usageMetadata": usage}

        if self._hostile(reply, seen, envelope):
            return
        if reply.kind == "error":
            self._send(
                reply.status,
                _google_error(reply.status, reply.message, reply.error_status, reply.details),
                reply.headers,
            )
        elif reply.kind == "blocked":
            self._send(
                200,
                {
                    "promptFeedback": {"blockReason": "SAFETY"},
                    "usageMetadata": {"promptTokenCount": USAGE["input"], "totalTokenCount": USAGE["input"]},
                },
            )
        else:
            text, finish = self._answer_text(reply, seen.panel_count)
            candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish, "index": 0}
            self._send(200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model})

    # -- OpenAI ------------------------------------------------------------------------
    def _openai(self, body: dict) -> None:
        if self.owner.api_key and self.headers.get("Authorization") != f"Bearer {self.owner.api_key}":
            return self._send(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        messages = body.get("messages") or []
        texts, images = [], []
        for item in (messages[0].get("content") if messages else []) or []:
            if item.get("type") == "text":
                texts.append(item["text"])
            elif item.get("type") == "image_url":
                url = item["image_url"]["url"]
                header, _, data = url.partition(",")
                if header != "data:image/jpeg;base64":
                    return self._send(
                        400,
                        {"error": {"message": "image_url must be a JPEG data URI", "type": "invalid_request_error"}},
                    )
                if not STANDARD_B64.match(data):
                    return self._send(
                        400, {"error": {"message": "image_url data is not base64", "type": "invalid_request_error"}}
                    )
                images.append((data, base64.b64decode))
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        seen = self._seen("openai", body.get("model", ""), texts, images, len(messages), limit, _panel_count(schema))
        if seen is None:
            return
        reply = self._reply_after_latency(seen, body)
        usage = {
            "prompt_tokens": USAGE["input"],
            "completion_tokens": USAGE["output"],
            "total_tokens": sum(USAGE.values()),
        }

        def envelope(text: str) -> dict:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            return {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": seen.model,
                "choices": [choice],
                "usage": usage,
            }

        if self._hostile(reply, seen, envelope):
            return
        if reply.kind == "error":
            payload = {
                "error": {
                    "message": reply.message,
                    "type": reply.error_status.lower(),
                    "code": reply.openai_code or None,
                }
            }
            self._send(reply.status, payload, reply.headers)
            return
        if reply.kind == "blocked":
            text, finish = "", "content_filter"
        else:
            text, finish = self._answer_text(reply, seen.panel_count)
            finish = {"STOP": "stop", "MAX_TOKENS": "length"}[finish]
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        self._send(
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": seen.model,
                "choices": [choice],
                "usage": usage,
            },
        )

    # -- hostile replies (issue 10) -------------------------------------------------------
    def _hostile(self, reply: Reply, seen: SeenRequest, envelope) -> bool:
        """Send `reply` if it is one of the hostile kinds; `envelope(answer text)` is the protocol's 200 body."""
        answer_text = json.dumps(valid_annotation(seen.panel_count or 4))
        if reply.kind == "non_json":
            page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
            self._send(200, page, {"Content-Type": "text/html"})
        elif reply.kind == "hostile_text":
            self._send(200, envelope(json.dumps(hostile_annotation(seen.panel_count or 4))))
        elif reply.kind == "trickle":
            body = json.dumps(envelope(answer_text)).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            self._stream([bytes([b]) for b in head + body], reply.interval_s)
        elif reply.kind == "huge":
            self._send_huge(json.dumps(envelope(answer_text)).encode(), reply)
        else:
            return False
        return True

    def _send_huge(self, answer: bytes, reply: Reply) -> None:
        pad = max(0, reply.size - len(answer))
        if reply.gzip:
            buffer = io.BytesIO()
            with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6) as packed:
                for _ in range(pad // 65536):
                    packed.write(b" " * 65536)
                packed.write(b" " * (pad % 65536) + answer)
            body = buffer.getvalue()
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {pad + len(answer)}\r\n\r\n"
            chunks = (b" " * min(65536, pad - i) for i in range(0, pad, 65536))
        self._stream(_chain([head.encode()], chunks, [answer]), 0.0)

    def _stream(self, chunks, interval_s: float) -> None:
        """Write `chunks` one at a time; stop (and note when) the client hangs up."""
        record = {"sent": 0, "started": time.monotonic(), "hung_up": None}
        self.owner.stream_log.append(record)
        self.close_connection = True
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
                record["sent"] += len(chunk)
                if interval_s:
                    time.sleep(interval_s)
        except (BrokenPipeError, ConnectionResetError):
            record["hung_up"] = time.monotonic()

    # -- shared ------------------------------------------------------------------------
    def _seen(self, protocol, model, texts, images, turns, limit, panel_count) -> SeenRequest | None:
        """`images`: (base64 text, its decoder). The alphabet was checked whole; only the
        header is decoded, so the server's CPU (shared with the benchmark's client) stays small."""
        try:
            sizes = tuple(_jpeg_size(decode(data[:HEADER_CHARS])) for data, decode in images)
        except (ValueError, OSError) as exc:
            self._send(400, _google_error(400, f"bad image: {exc}", "INVALID_ARGUMENT"))
            return None
        digests = tuple(hashlib.sha256(data.encode("ascii")).hexdigest() for data, _ in images)
        return SeenRequest(
            protocol, self.path, model, "\n".join(texts), turns, digests, sizes, limit, panel_count, time.monotonic()
        )

    @staticmethod
    def _answer_text(reply: Reply, panel_count: int) -> tuple[str, str]:
        full = json.dumps(valid_annotation(panel_count or 4))
        if reply.kind == "answer":
            return reply.text, "STOP"
        if reply.kind == "max_tokens":
            return full[: len(full) // 3], "MAX_TOKENS"
        return full, "STOP"


def server_endpoint(
    server: "CaptionServer", protocol: str = "gemini", name: str = "test", key_env=(), key_file: str = ""
):
    """A locally configured endpoint (mvic.settings.Endpoint) for this server: what
    `python -m mvic config add-endpoint` would write."""
    from packload import mvic_module

    url = server.url if protocol == "gemini" else server.openai_url
    return mvic_module("settings").Endpoint(name, protocol, url, tuple(key_env), str(key_file))


def _chain(*parts):
    for part in parts:
        yield from part


# -- composites to caption (tests and benchmark) ------------------------------------------
def make_test_composites(
    count: int,
    rows: int = 2,
    cols: int = 2,
    panel: int = 64,
    category: str = "mug",
    photo_like: bool = False,
    seed: int = 0,
):
    """`count` distinct composites built as the pipeline builds them (real dataclasses from
    the pack loaded by path). `photo_like`: textured pixels that compress like photos."""
    import numpy as np
    from packload import mvic_module

    datatypes, layout_mod, markers = mvic_module("datatypes"), mvic_module("layout"), mvic_module("markers")
    layout = layout_mod.CompositeLayout(rows, cols, panel, panel)
    rng = np.random.default_rng(seed)
    gradient = np.linspace(0, 255, layout.width, dtype=np.float32)[None, :, None]
    items = []
    for index in range(count):
        if photo_like:
            from PIL import Image

            coarse = rng.integers(0, 256, (layout.height // 32, layout.width // 32, 3), dtype=np.uint8)
            smooth = np.asarray(
                Image.fromarray(coarse).resize((layout.width, layout.height), Image.Resampling.BICUBIC), np.int16
            )
            image = np.clip(smooth + rng.integers(-10, 11, smooth.shape), 0, 255).astype(np.uint8)
        else:
            image = np.broadcast_to(gradient, (layout.height, layout.width, 3)).astype(np.uint8).copy()
            image[: layout.height // 4, : layout.width // 4] = (index * 37 % 256, index * 11 % 256, index // 256)
        name = f"{category}/set{index:04d}"
        panels = [datatypes.PanelSource(name, category, f"/frames/{name}/{p}.jpg", p) for p in range(layout.count)]
        items.append(datatypes.Composite(name, category, layout, markers.markers_for(rows, cols), image, panels))
    return datatypes.Composites(items=items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    server = CaptionServer(latency_s=args.latency, api_key=args.api_key).start()
    print(f"PORT {server.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
