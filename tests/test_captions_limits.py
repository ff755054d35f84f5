"""Network limits against hostile caption servers (issue 10), through the real google-genai and
openai SDKs on the real wire: a per-request deadline a trickling server cannot stretch, a cap on
the answer's size (also compressed), a 200 that is not JSON as one failed composite, control
characters and overlong text out of every caption, and a stop that ends requests in flight."""

import json
import os
import subprocess
import sys
import threading
import time
import unicodedata

import pytest
from caption_server import (
    CaptionServer,
    error,
    hostile_text,
    huge,
    make_test_composites,
    non_json,
    ok,
    server_endpoint,
    trickle,
)
from hostile import Listener
from packload import ROOT, mvic_module

captioner = mvic_module("captions.captioner")
render = mvic_module("captions.text")
parse_mod = mvic_module("captions.text")
PROTOCOLS = ["gemini", "openai-compatible"]


def settings(server, protocol, **overrides):
    options = dict(
        endpoint=server_endpoint(server, protocol),
        use_cache=False,
        concurrency=1,
        retry_base_delay_s=0.01,
        timeout_s=5,
        rpm=0,
        max_consecutive_failures=9,
    )
    options.update(overrides)
    return captioner.CaptionSettings(**options)


def run_within(seconds: float, function, *args, **kwargs):
    """Run `function` in a thread; fail (instead of hanging, as main did) if it is not done in time."""
    result, failure = [], []

    def target():
        try:
            result.append(function(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            failure.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    if failure:
        raise failure[0]
    return result[0], time.monotonic() - started


def has_control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Cs") or c in "\u202e\u2066" for c in text)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_trickling_server_cannot_stretch_a_request_past_its_deadline(protocol):
    # A byte every 0.3 s answers every 5-s read in time: only the request's own deadline ends it.
    with CaptionServer([trickle(0.3)]) as server:
        (result, report), _ = run_within(
            30, captioner.caption_composites, make_test_composites(2), settings(server, protocol, deadline_s=2.0)
        )
        ended = time.monotonic()
        stream = server.stream_log[0]
        wait_for(lambda: stream["hung_up"] is not None, 3)
    assert ended - stream["started"] < 2.0 + 1.5  # the deadline, then the other composite at once
    assert stream["hung_up"] is not None and stream["hung_up"] - stream["started"] < 2.0 + 1.0  # the client hung up
    (failure,) = report.failures
    assert "no complete answer within 2 s (the request's deadline)" in failure.reason
    assert server.count == 2  # not retried: a slow server stays slow
    assert sorted(c.caption.backend for c in result.items) == sorted(["template", protocol])


def wait_for(condition, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_an_answer_over_the_size_cap_is_dropped_early(protocol, compressed):
    size = (16 if compressed else 64) * 2**20  # 64 MiB of JSON; gzip: ~16 KiB on the wire that inflate to 16 MiB
    with CaptionServer([huge(size, gzip=compressed)]) as server:
        (result, report), _ = run_within(
            60, captioner.caption_composites, make_test_composites(2), settings(server, protocol)
        )
        time.sleep(0.2)
        sent = server.stream_log[0]["sent"]
    (failure,) = report.failures
    what = "decompressed answer" if compressed else "the answer"
    assert f"{what} is larger than 2 MiB (the size cap)" in failure.reason
    if not compressed:
        assert sent < 16 * 2**20, f"the client read on: the server sent {sent:,} bytes"
    assert server.count == 2 and sorted(c.caption.backend for c in result.items) == sorted(["template", protocol])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_200_that_is_not_json_fails_one_composite_not_the_run(protocol):
    with CaptionServer([non_json()]) as server:
        result, report = captioner.caption_composites(make_test_composites(3), settings(server, protocol))
    assert server.count == 3  # no retry, and the run goes on
    (failure,) = report.failures
    assert "answer is not" in failure.reason and "JSON" in failure.reason
    assert sorted(c.caption.backend for c in result.items) == sorted(["template", protocol, protocol])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_control_characters_and_overlong_text_never_reach_a_caption(protocol):
    with CaptionServer([hostile_text()]) as server:
        result, report = captioner.caption_composites(make_test_composites(1), settings(server, protocol))
    assert report.failures == [] and server.count == 1
    caption = result.items[0].caption.text
    assert not has_control(caption) and "redc31m mug" in caption  # the controls removed, the visible rest kept
    assert len(caption) <= render.MAX_CAPTION_CHARS
    assert parse_mod.validate_caption(caption, result.items[0].markers) == []  # every marker intact


def test_a_caption_is_cut_to_the_cap_without_losing_a_marker():
    markers = mvic_module("markers").markers_for(4, 5)  # 20 panels, the most a layout has
    texts = [f"panel {n} " + "word " * 400 for n in range(20)]
    caption = render.render_caption(markers, "summary " * 2000, texts, trigger="mvstyle")
    assert len(caption) <= render.MAX_CAPTION_CHARS and caption.startswith("mvstyle [TWENTY-VIEWS] summary")
    assert parse_mod.validate_caption(caption, markers) == []
    parsed = parse_mod.parse_caption(caption, markers)
    assert all(text.startswith(f"panel {n} word") for n, text in enumerate(parsed.texts))


def test_a_template_caption_from_a_hostile_folder_name_is_plain_text():
    composites = make_test_composites(1, category="mug\x00\x1b]0;pwned\x07\x7f [TOP-LEFT]")
    result, _ = captioner.caption_composites(composites)
    caption = result.items[0].caption.text
    assert not has_control(caption) and "mug)0;pwned (TOP-LEFT)" in caption  # no control, and no fake marker
    assert parse_mod.validate_caption(caption, result.items[0].markers) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_stopping_the_run_ends_a_request_in_flight_within_a_second(protocol):
    class Cancel(Exception):
        pass

    asked = time.monotonic() + 1e9

    def check_cancel():  # what ComfyUI's Cancel does through check_interrupt
        nonlocal asked
        if server.count and asked > 1e8:
            asked = time.monotonic()
        if time.monotonic() > asked + 0.5:
            raise Cancel()

    with CaptionServer(default=trickle(0.3)) as server:
        with pytest.raises(Cancel):
            run_within(
                30,
                captioner.caption_composites,
                make_test_composites(4),
                settings(server, protocol, concurrency=2),
                check_cancel=check_cancel,
            )
        cancelled = asked + 0.5
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(r["hung_up"] is None for r in server.stream_log):
            time.sleep(0.05)
    hung_up = [r["hung_up"] for r in server.stream_log]
    assert hung_up and all(t is not None and t - cancelled < 3.0 for t in hung_up), hung_up  # ~0.5 s when idle
    assert 1 <= server.count <= 2  # those in flight (concurrency 2); nothing sent after the stop


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_redirect_never_takes_the_key_to_another_host(protocol, monkeypatch):
    monkeypatch.setenv("MY_KEY", "key-for-this-endpoint-only")
    with Listener() as elsewhere:
        moved = error(307, "REDIRECT", "moved", headers={"Location": elsewhere.url + "/v1/x"})
        with CaptionServer(default=moved) as server:
            endpoint = server_endpoint(server, protocol, key_env=("MY_KEY",))
            result, report = captioner.caption_composites(
                make_test_composites(1), settings(server, protocol, endpoint=endpoint)
            )
    assert elsewhere.requests == [] and server.count == 1
    assert result.items[0].caption.backend == "template" and report.failures


def test_a_request_to_another_origin_is_refused_before_it_is_sent():
    transport = mvic_module("captions.backends.transport")
    errors, request = mvic_module("captions.backends.errors"), mvic_module("captions.backends.request")
    with Listener() as elsewhere:
        client = transport.endpoint_client("http://127.0.0.1:9/v1", 5)
        with pytest.raises(errors.FatalError, match="refused to send a request to .* its key goes nowhere else"):
            with transport.guarded_request(request.RequestLimits()):
                client.post(
                    elsewhere.url + "/v1/chat/completions", headers={"Authorization": "Bearer k"}, content=b"{}"
                )
    assert elsewhere.requests == []


def test_cli_build_survives_a_huge_answer_with_bounded_memory(tmp_path):
    """300 MB once took 1.87 GB of RSS: the same build against a normal and a 200 MB answer peaks alike."""
    sample = mvic_module("sources.sample").ensure_sample_data()
    code = (
        "import resource, sys, runpy; sys.argv = ['mvic'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('mvic', run_name='__main__')\n"
        "finally:\n    print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    )
    peaks = {}
    for label, script in (("normal", [ok()]), ("huge", [huge(200 * 2**20)])):
        with CaptionServer(script) as server:
            env = {**os.environ, "MVIC_SETTINGS": str(tmp_path / "settings.json")}
            config = [sys.executable, "-m", "mvic", "config", "add-endpoint", "local", "--base-url", server.openai_url]
            subprocess.run(config, cwd=ROOT, env=env, check=True, capture_output=True, timeout=60)
            command = [
                sys.executable,
                "-c",
                code,
                "build",
                "--source",
                "mvimgnet",
                "--input",
                str(sample),
                "--out",
                str(tmp_path / label),
                "--panel",
                "64x64",
                "--max-sets",
                "2",
                "--caption-endpoint",
                "local",
                "--caption-concurrency",
                "1",
                "--caption-cache-dir",
                str(tmp_path / f"cache-{label}"),
            ]
            out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        peaks[label] = int(out.stderr.split("PEAK_KIB")[-1].split()[0]) / 1024
        if label == "huge":
            assert "1 fell back to the template caption" in out.stdout and "larger than 2 MiB" in out.stdout
    assert peaks["huge"] - peaks["normal"] < 64, f"peak RSS MiB: {peaks}"
    records = [json.loads(line) for line in (tmp_path / "huge" / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["caption"]["backend"] for r in records) == ["openai-compatible", "template"]


class ForwardProxy:
    """A plain HTTP forward proxy (absolute-form requests), as HTTP_PROXY would name."""

    def __init__(self):
        import http.client
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                proxy.seen.append(self.path)
                target = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
                upstream.request("POST", target.path + (f"?{target.query}" if target.query else ""), body, headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_environments_proxy_is_still_used_with_the_limits(protocol, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as proxy, CaptionServer([trickle(0.3)]) as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        result, report = captioner.caption_composites(
            make_test_composites(2), settings(server, protocol, deadline_s=2.0)
        )
        address = server.url
    assert len(proxy.seen) == 2 and all(path.startswith(address) for path in proxy.seen)
    assert [f.reason for f in report.failures] == ["no complete answer within 2 s (the request's deadline)"]
