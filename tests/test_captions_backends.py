"""Every error case through the real google-genai and openai SDKs against a local server
that speaks their wire protocols; each case asserts the exact number of requests."""

import base64
import json
import logging
import re
import time

import pytest
from caption_server import (
    CaptionServer,
    answer,
    blocked,
    error,
    make_test_composites,
    max_tokens,
    ok,
    quota_exhausted,
    rate_limited,
    retry_info,
    server_endpoint,
    server_error,
    valid_annotation,
)
from packload import mvic_module

captioner = mvic_module("captions.captioner")
parse_mod = mvic_module("captions.text")
template = mvic_module("captions.template")

KEY = "AIza-SENTINEL-test-key-0123456789"
PROTOCOLS = ["gemini", "openai-compatible"]


@pytest.fixture(autouse=True)
def api_keys(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


KEY_ENV = {"gemini": ("GEMINI_API_KEY",), "openai-compatible": ("OPENAI_API_KEY",)}


def run(server, backend, count=1, key_file="", base_url="", **overrides):
    """An endpoint for the server, configured (as a user would) with the env key meant for it."""
    endpoint = server_endpoint(server, backend, key_env=KEY_ENV[backend], key_file=key_file)
    if base_url:
        endpoint = endpoint.__class__(**{**endpoint.__dict__, "base_url": base_url})
    options = dict(endpoint=endpoint, use_cache=False, concurrency=1, retry_base_delay_s=0.01, timeout_s=5, rpm=0)
    options.update(overrides)
    return captioner.caption_composites(make_test_composites(count), captioner.CaptionSettings(**options))


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_success_sends_one_request_with_the_image_and_schema(backend):
    with CaptionServer(api_key=KEY, keep_bodies=True) as server:
        result, report = run(server, backend)
    assert server.count == 1
    seen, body = server.requests[0], server.bodies[0]
    assert seen.image_sizes == ((128, 128),) and seen.panel_count == 4 and "2 x 2 grid" in seen.prompt
    if backend == "gemini":
        assert seen.path == "/v1beta/models/gemini-2.5-flash:generateContent"
        inline = body["contents"][0]["parts"][0]["inlineData"]
        assert base64.urlsafe_b64decode(inline["data"])[:3] == b"\xff\xd8\xff"
        assert body["generationConfig"]["responseMimeType"] == "application/json"
    else:
        assert seen.path == "/v1/chat/completions" and seen.model == "gpt-4o-mini"
        assert body["response_format"]["json_schema"]["strict"] is True
        assert body["max_tokens"] == 2048  # a local server: max_tokens, not max_completion_tokens
    caption = result.items[0].caption
    assert (
        caption.backend == backend
        and caption.model == seen.model
        and caption.prompt_version == "annotation-1/composite"
    )
    parsed = parse_mod.parse_caption(caption.text, result.items[0].markers)
    assert parsed.summary == valid_annotation(4)["summary"]
    assert (
        parsed.texts[1]
        == "This photo shows a high-angle left side view of the red ceramic mug, with handle and glaze detail 2 visible"
    )
    assert (report.requests, report.from_model, report.failures) == (1, 1, [])
    assert (report.usage.input_tokens, report.usage.output_tokens) == (1290, 180)
    if backend == "gemini":
        assert report.estimated_cost_usd == pytest.approx((1290 * 0.30 + 180 * 2.50) / 1e6)


def test_gemini_base_url_may_name_the_v1_api_version():
    with CaptionServer(api_key=KEY) as server:
        run(server, "gemini", base_url=server.url + "/v1", model="gemini-2.0-flash")
    assert server.count == 1 and server.requests[0].path == "/v1/models/gemini-2.0-flash:generateContent"


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_429_then_success_retries_once(backend):
    with CaptionServer([rate_limited()], api_key=KEY) as server:
        result, report = run(server, backend)
    assert server.count == 2
    assert (report.retries, report.from_model, report.failures) == (1, 1, [])
    assert result.items[0].caption.backend == backend


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_429_with_retry_delay_waits_at_least_that_long(backend, caplog):
    # Gemini says RetryInfo.retryDelay "1s"; OpenAI-style servers say Retry-After: 1.
    caplog.set_level(logging.INFO)
    with CaptionServer([rate_limited(retry_delay_s=1.0)], api_key=KEY) as server:
        _, report = run(server, backend, retry_base_delay_s=1.0)
    assert server.count == 2
    gap = server.requests[1].at - server.requests[0].at
    assert gap >= 1.0, f"retried after {gap:.3f} s, the server asked for 1 s"
    # The planned wait (logged; wall-clock time on a loaded machine says little more): the server's 1 s plus
    # at most the jitter (0.25 of the 1 s base), not an exponential backoff (>= 0.75 s) on top of it.
    (planned,) = [float(m) for m in re.findall(r"retry 1 in ([\d.]+) s", caplog.text)]
    assert 1.0 <= planned <= 1.25 + 0.05, caplog.text
    assert report.retries == 1 and report.failures == []


@pytest.mark.parametrize(
    "backend, message",
    [
        ("gemini", "quota exhausted for model gemini-2.5-flash (GenerateRequestsPerDayPerProjectPerModel-FreeTier)"),
        ("openai-compatible", "the quota for gpt-4o-mini is used up"),
    ],
)
def test_exhausted_quota_stops_the_run_after_one_request(backend, message):
    with CaptionServer([quota_exhausted()], api_key=KEY) as server:
        with pytest.raises(captioner.CaptionRunError) as info:
            run(server, backend, count=3)
    assert server.count == 1  # no retry, and the other two composites are never sent
    assert message in str(info.value) and "re-run" in str(info.value)
    assert KEY not in str(info.value)


def test_a_zero_limit_429_stops_the_run_too():
    # A model the free tier does not include: every metric has "limit: 0", the RetryInfo notwithstanding.
    zero = error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for metric: generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro",
        [retry_info(20)],
    )
    with CaptionServer([zero], api_key=KEY) as server:
        with pytest.raises(captioner.CaptionRunError, match="a zero limit for this model") as info:
            run(server, "gemini", count=2, model="gemini-2.5-pro")
    assert server.count == 1 and "1 request(s)" in str(info.value)


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_500_storm_is_bounded_then_falls_back_to_the_template_caption(backend):
    with CaptionServer(default=server_error(500), api_key=KEY) as server:
        result, report = run(server, backend, max_attempts=3)
    assert server.count == 3
    (failure,) = report.failures
    assert "gave up after 3 attempts" in failure.reason and "500" in failure.reason
    composite = result.items[0]
    assert composite.caption == template.template_caption(composite)


def test_a_server_that_keeps_failing_stops_the_run_after_consecutive_failures():
    with CaptionServer(default=server_error(503), api_key=KEY) as server:
        with pytest.raises(captioner.CaptionRunError, match="failed 2 composites in a row"):
            run(server, "gemini", count=5, max_attempts=1, max_consecutive_failures=2)
    assert server.count == 2  # composites 3-5 are never sent


def test_a_request_the_server_refuses_every_time_stops_the_run():
    # e.g. a local server without JSON-schema support answers 400 to every composite.
    refused = error(400, "INVALID_ARGUMENT", "response_format json_schema is not supported")
    with CaptionServer(default=refused, api_key=KEY) as server:
        with pytest.raises(
            captioner.CaptionRunError,
            match="failed 3 composites in a row .*response_format json_schema is not supported",
        ):
            run(server, "openai-compatible", count=6)
    assert server.count == 3  # one each, no retries, then the run stops


def test_views_mode_sends_each_panel_as_its_own_image():
    with CaptionServer(api_key=KEY) as server:
        result, _ = run(server, "gemini", input_mode="views")
    (seen,) = server.requests
    assert seen.image_sizes == ((64, 64),) * 4 and "separate photos" in seen.prompt
    assert result.items[0].caption.prompt_version == "annotation-1/views"


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_malformed_json_is_reasked_once_quoting_the_error(backend):
    with CaptionServer([answer('{"object_name": "mug", "summary": ')], api_key=KEY, keep_bodies=True) as server:
        result, report = run(server, backend)
    assert server.count == 2
    assert report.reasks == 1 and report.failures == []
    first, second = server.requests
    assert (first.turns, second.turns) == (1, 3)  # user; user, model's bad answer, user's re-ask
    reask = json.dumps(server.bodies[1])
    assert "Your previous answer was rejected: the answer is not valid JSON" in reask
    assert parse_mod.validate_caption(result.items[0].caption.text, result.items[0].markers) == []


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_schema_violating_json_twice_is_a_reported_failure(backend):
    wrong = json.dumps({"object_name": "mug", "summary": "A mug", "panels": valid_annotation(3)["panels"]})
    with CaptionServer([answer(wrong), answer(wrong)], api_key=KEY, keep_bodies=True) as server:
        result, report = run(server, backend)
    assert server.count == 2
    (failure,) = report.failures
    assert (
        "invalid answer even after a re-ask" in failure.reason
        and "has 4 panels but the answer describes 3" in failure.reason
    )
    assert "has 4 panels but the answer describes 3" in json.dumps(server.bodies[1])
    assert result.items[0].caption.backend == "template"


@pytest.mark.parametrize(
    "backend, reason", [("gemini", "Gemini blocked the prompt (SAFETY)"), ("openai-compatible", "content filter")]
)
def test_blocked_prompt_is_a_failure_without_retry(backend, reason):
    with CaptionServer([blocked()], api_key=KEY) as server:
        result, report = run(server, backend)
    assert server.count == 1
    assert reason in report.failures[0].reason
    assert result.items[0].caption.backend == "template"


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_max_tokens_retries_once_with_a_doubled_budget(backend):
    with CaptionServer([max_tokens()], api_key=KEY) as server:
        _, report = run(server, backend)
    assert server.count == 2
    assert [r.max_output_tokens for r in server.requests] == [2048, 4096]
    assert report.failures == [] and report.from_model == 1


def test_max_tokens_twice_is_a_failure_that_says_what_to_raise():
    with CaptionServer([max_tokens(), max_tokens()], api_key=KEY) as server:
        _, report = run(server, "gemini")
    assert server.count == 2
    assert "raise max_output_tokens" in report.failures[0].reason


@pytest.mark.parametrize("backend", PROTOCOLS)
def test_timeout_is_retried(backend):
    with CaptionServer([ok(delay_s=1.5)], api_key=KEY) as server:
        started = time.monotonic()
        result, report = run(server, backend, timeout_s=0.5)
    assert server.count == 2
    assert time.monotonic() - started >= 0.5
    assert report.retries == 1 and report.failures == [] and result.items[0].caption.backend == backend


@pytest.mark.parametrize("backend, source", [("gemini", "$GEMINI_API_KEY"), ("openai-compatible", "$OPENAI_API_KEY")])
def test_a_rejected_key_stops_the_run_and_names_where_the_key_came_from(backend, source):
    with CaptionServer(api_key="the-right-key") as server:
        with pytest.raises(captioner.CaptionRunError, match=f"rejected the API key from \\{source}") as info:
            run(server, backend, count=2)
    assert server.count == 1 and KEY not in str(info.value)


def test_missing_key_for_the_official_endpoint_is_a_clear_error_before_any_request(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    endpoint = mvic_module("settings").BUILTIN_ENDPOINTS["gemini"]
    with pytest.raises(
        ValueError, match="'gemini' needs an API key: for the built-in gemini endpoint set GEMINI_API_KEY"
    ):
        captioner.caption_composites(
            make_test_composites(1), captioner.CaptionSettings(endpoint=endpoint, use_cache=False)
        )


def test_key_file_wins_over_the_environment(tmp_path):  # the env holds KEY; the server accepts only the file's key
    key_file = tmp_path / "gemini.key"
    key_file.write_text("file-key-123456\n")
    with CaptionServer(api_key="file-key-123456") as server:
        _, report = run(server, "gemini", key_file=str(key_file))
    assert server.count == 1 and report.key_source == f"key file {key_file}"


@pytest.mark.parametrize(
    "content", ["file-key-123456\n", "# my key\nexport GEMINI_API_KEY='file-key-123456'\nOTHER=1\n"]
)
def test_key_file_may_hold_the_key_alone_or_env_style(tmp_path, content):
    key_file = tmp_path / "gemini.key"
    key_file.write_text(content)
    with CaptionServer(api_key="file-key-123456") as server:
        run(server, "gemini", key_file=str(key_file))
    assert server.count == 1


def test_a_key_file_without_a_key_says_what_to_write(tmp_path):
    key_file = tmp_path / "empty.key"
    key_file.write_text("OPENAI_API_KEY=abc\n")
    endpoint = mvic_module("settings").BUILTIN_ENDPOINTS["gemini"].__class__("mine", "gemini", "", (), str(key_file))
    with pytest.raises(
        ValueError,
        match=r"'mine': key file .* holds no key: write only the key in it, "
        r"or a line GEMINI_API_KEY or GOOGLE_API_KEY=\.\.\.",
    ) as info:
        captioner.caption_composites(
            make_test_composites(1), captioner.CaptionSettings(endpoint=endpoint, use_cache=False)
        )
    assert "abc" not in str(info.value)
