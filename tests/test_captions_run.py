"""A captioning run as a whole: cache, concurrency and rate cap, shared requests,
interruption, the CLI, and the rule that the API key never lands anywhere."""

import functools
import json
import logging
import os
import subprocess
import sys
import time

import pytest
from caption_server import CaptionServer, blocked, make_test_composites, rate_limited, server_endpoint
from packload import ROOT, mvic_module

captioner = mvic_module("captions.captioner")
cache_mod = mvic_module("captions.cache")
parse_mod = mvic_module("captions.text")
ratelimit = mvic_module("captions.ratelimit")

KEY = "AIza-SENTINEL-run-key-9876543210"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def settings(server, tmp_path, **overrides):
    options = dict(
        endpoint=server_endpoint(server, key_env=("GEMINI_API_KEY",)),
        cache_dir=str(tmp_path / "cache"),
        concurrency=8,
        rpm=0,
        retry_base_delay_s=0.01,
        timeout_s=5,
    )
    options.update(overrides)
    return captioner.CaptionSettings(**options)


def test_second_run_over_the_same_50_composites_makes_no_request(tmp_path, monkeypatch):
    composites = make_test_composites(50)
    with CaptionServer(api_key=KEY) as server:
        first, report1 = captioner.caption_composites(composites, settings(server, tmp_path))
        assert server.count == 50 and report1.from_model == 50
        monkeypatch.delenv("GEMINI_API_KEY")  # answered from the cache: no key, no SDK client needed
        second, report2 = captioner.caption_composites(composites, settings(server, tmp_path, trigger="mvstyle"))
        assert server.count == 50  # 0 requests on the second run
        assert (report2.requests, report2.from_cache, report2.from_model) == (0, 50, 0)
        assert report2.saved_usage.input_tokens == 50 * 1290
        # The trigger only changes the rendering, which is ours.
        assert [c.caption.text for c in second.items] == ["mvstyle " + c.caption.text for c in first.items]
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        captioner.caption_composites(make_test_composites(5), settings(server, tmp_path, model="gemini-2.0-flash"))
        assert server.count == 55  # another model is another cache entry


def test_cache_entries_are_keyed_by_layout_and_markers(tmp_path):
    composite = make_test_composites(1).items[0]
    key = cache_mod.CacheKey.for_composite(composite, "annotation-1/composite", "gemini", "gemini-2.5-flash")
    assert key.layout == "2x2 of 64x64" and key.markers.startswith("[FOUR-VIEWS] [TOP-LEFT]")
    other_markers = composite.__class__(
        **{
            **composite.__dict__,
            "markers": mvic_module("markers").markers_for(2, 2, mvic_module("markers").MarkerStyle("[SET]", "")),
        }
    )
    assert (
        cache_mod.CacheKey.for_composite(other_markers, "annotation-1/composite", "gemini", "gemini-2.5-flash").digest
        != key.digest
    )


def test_a_damaged_cache_entry_is_asked_again(tmp_path):
    composites = make_test_composites(2)
    with CaptionServer(api_key=KEY) as server:
        captioner.caption_composites(composites, settings(server, tmp_path))
        entries = sorted((tmp_path / "cache").rglob("*.json"))
        assert len(entries) == 2
        entries[0].write_text("{half a file")
        _, report = captioner.caption_composites(composites, settings(server, tmp_path))
    assert server.count == 3 and report.from_cache == 1 and report.from_model == 1


def test_a_person_edited_caption_survives_a_recaption_unless_asked(tmp_path):
    save_dataset = mvic_module("export.dataset").save_dataset
    composites = make_test_composites(3)
    with CaptionServer(api_key=KEY) as server:
        captioned, _ = captioner.caption_composites(composites, settings(server, tmp_path))
        save_dataset(captioned, tmp_path / "ds", "jpg")
        edited = sorted((tmp_path / "ds").rglob("*.txt"))[0]
        edited.write_text("[FOUR-VIEWS] my own words; [TOP-LEFT] a; [TOP-RIGHT] b; [BOTTOM-LEFT] c; [BOTTOM-RIGHT] d.")
        again, report = captioner.caption_composites(composites, settings(server, tmp_path))
        kept = save_dataset(again, tmp_path / "ds", "jpg")
        assert server.count == 3 and report.from_cache == 3
        assert (
            kept.captions_kept == [edited.relative_to(tmp_path / "ds").as_posix()]
            and "my own words" in edited.read_text()
        )
        save_dataset(again, tmp_path / "ds", "jpg", overwrite_edited_captions=True)
    assert "red ceramic mug" in edited.read_text()


def test_concurrency_bounds_requests_in_flight(tmp_path):
    with CaptionServer(api_key=KEY, latency_s=0.1) as server:
        started = time.monotonic()
        captioner.caption_composites(
            make_test_composites(12), settings(server, tmp_path, concurrency=3, use_cache=False)
        )
        elapsed = time.monotonic() - started
    assert server.count == 12 and server.max_in_flight == 3
    assert elapsed >= 0.4  # 12 requests / 3 in flight x 0.1 s


def test_requests_per_minute_cap_holds_in_every_window():
    gate = ratelimit.RequestGate(concurrency=8, per_minute=3, period_s=0.4)
    times = []
    for _ in range(7):
        with gate.slot():
            times.append(time.monotonic())
    for t in times:
        assert sum(t <= u < t + 0.4 - 1e-3 for u in times) <= 3
    assert times[-1] - times[0] >= 0.8  # 7 sends at 3 per window need 3 windows


def test_the_rate_cap_applies_to_a_real_run(tmp_path, monkeypatch):
    # Same gate, a 1 s window instead of 60 s so the test is quick.
    monkeypatch.setattr(captioner, "RequestGate", functools.partial(ratelimit.RequestGate, period_s=1.0))
    with CaptionServer(api_key=KEY) as server:
        captioner.caption_composites(make_test_composites(5), settings(server, tmp_path, rpm=2, use_cache=False))
    times = [r.at for r in server.requests]
    # Server-side arrival times: allow for when each send reaches the server on a loaded machine (0.25 s).
    assert len(times) == 5 and times[-1] - times[0] >= 2.0 - 0.25
    for t in times:
        assert sum(t <= u < t + 1.0 - 0.25 for u in times) <= 2


def test_identical_composites_share_one_request(tmp_path):
    composites = make_test_composites(3)
    twin = composites.items[0].__class__(**{**composites.items[0].__dict__, "set_name": "mug/twin"})
    composites.items.append(twin)
    with CaptionServer(api_key=KEY) as server:
        result, report = captioner.caption_composites(
            composites, settings(server, tmp_path, concurrency=1, use_cache=False)
        )
    assert server.count == 3 and report.from_model == 3 and report.from_cache == 1
    assert result.items[3].caption.text == result.items[0].caption.text


def test_cancelling_stops_the_workers(tmp_path):
    class Stop(Exception):
        pass

    with CaptionServer(api_key=KEY, latency_s=0.05) as server:
        sent_at_stop = []

        def on_progress(done, total):
            if done == 2:
                sent_at_stop.append(server.count)
                raise Stop()  # what ComfyUI's cancel button does through check_interrupt

        with pytest.raises(Stop):
            captioner.caption_composites(
                make_test_composites(30), settings(server, tmp_path, concurrency=2), on_progress
            )
        time.sleep(0.3)
        sent = server.count
    # Requests already counted when the run stopped may finish; at most one per slot was
    # between its stop check and its send; nothing else goes out.
    assert sent <= sent_at_stop[0] + 2 and sent < 30


def test_progress_is_reported_once_per_composite(tmp_path):
    calls = []
    with CaptionServer(api_key=KEY) as server:
        captioner.caption_composites(
            make_test_composites(6), settings(server, tmp_path), lambda d, t: calls.append((d, t))
        )
    assert calls == [(d, 6) for d in range(1, 7)]


def test_the_key_lands_in_no_file_no_log_line_and_no_report(tmp_path, caplog, capfd):
    sample = mvic_module("sources.sample").ensure_sample_data()
    sets = mvic_module("loading").load_multiview_sets("mvimgnet", sample, 4)
    layout = mvic_module("layout").CompositeLayout(2, 2, 64, 64)
    composites = mvic_module("composites").build_composites(sets, layout)
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' and httpx's included
    with CaptionServer([rate_limited(0.05), blocked()], api_key=KEY) as server:
        captioned, report = captioner.caption_composites(
            composites, settings(server, tmp_path, concurrency=1, max_consecutive_failures=9)
        )
        export = mvic_module("export.dataset").save_dataset(captioned, tmp_path / "dataset", "jpg", "mvstyle")
        with CaptionServer([rate_limited(0.01)], api_key="another-key") as wrong:  # a rejected-key error message too
            with pytest.raises(captioner.CaptionRunError) as info:
                captioner.caption_composites(composites, settings(wrong, tmp_path, cache_dir=str(tmp_path / "cache2")))
    assert server.count == len(composites.items) + 1 and len(report.failures) == 1  # one retry, one blocked
    assert "rejected the API key from $GEMINI_API_KEY" in str(info.value)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".txt" for p in written) and any(p.suffix == ".json" and "cache" in p.parts for p in written)
    leaks = [str(p) for p in written if KEY.encode() in p.read_bytes()]
    assert leaks == []
    out, err = capfd.readouterr()
    texts = {
        "log": caplog.text,
        "stdout": out,
        "stderr": err,
        "report": report.text(),
        "error": str(info.value),
        "export": export.text(),
    }
    assert "generateContent" in caplog.text  # the capture did see the HTTP layer
    assert [name for name, text in texts.items() if KEY in text] == []
    request, secret = mvic_module("captions.backends.request"), mvic_module("captions.backends.secret")
    config = request.BackendConfig("gemini", api_key=secret.Secret(KEY))
    assert KEY not in repr(config) and KEY not in f"{config.api_key}" and config.api_key.reveal() == KEY


def test_cli_build_captions_with_gemini_and_keeps_the_key_out_of_its_output(tmp_path):
    sample = mvic_module("sources.sample").ensure_sample_data()
    env = {**os.environ, "GEMINI_API_KEY": KEY, "MVIC_SETTINGS": str(tmp_path / "settings.json")}
    with CaptionServer(api_key=KEY) as server:
        config = [
            sys.executable,
            "-m",
            "mvic",
            "config",
            "add-endpoint",
            "proxy",
            "--backend",
            "gemini",
            "--base-url",
            server.url,
            "--key-env",
            "GEMINI_API_KEY",
        ]
        assert subprocess.run(config, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60).returncode == 0
        command = [
            sys.executable,
            "-m",
            "mvic",
            "build",
            "--source",
            "mvimgnet",
            "--input",
            str(sample),
            "--out",
            str(tmp_path / "ds"),
            "--panel",
            "64x64",
            "--caption-endpoint",
            "proxy",
            "--caption-cache-dir",
            str(tmp_path / "c"),
        ]
        out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert server.count == 6 and "6 captioned by the model" in out.stdout
    captions = sorted((tmp_path / "ds").rglob("*.txt"))
    assert len(captions) == 6 and all("red ceramic mug" in p.read_text() for p in captions)
    records = [json.loads(line) for line in (tmp_path / "ds" / "metadata.jsonl").read_text().splitlines()]
    assert {r["caption"]["backend"] for r in records} == {"gemini"} and {r["caption"]["model"] for r in records} == {
        "gemini-2.5-flash"
    }
    assert KEY not in out.stdout + out.stderr


def test_cli_build_without_a_key_is_a_clear_error(tmp_path):
    sample = mvic_module("sources.sample").ensure_sample_data()
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    env["MVIC_SETTINGS"] = str(tmp_path / "settings.json")
    command = [
        sys.executable,
        "-m",
        "mvic",
        "build",
        "--source",
        "mvimgnet",
        "--input",
        str(sample),
        "--out",
        str(tmp_path / "ds"),
        "--panel",
        "64x64",
        "--caption-backend",
        "gemini",
        "--caption-cache-dir",
        str(tmp_path / "c"),
        "--max-sets",
        "1",
    ]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "needs an API key: for the built-in gemini endpoint set GEMINI_API_KEY" in out.stderr
    assert "Traceback" not in out.stderr


def test_demo_captions_offline_with_the_template_backend(tmp_path):
    # No key in the environment, and neither SDK is even imported: nothing can reach a network.
    code = (
        "import sys, mvic.cli; rc = mvic.cli.main(['demo', '--out', sys.argv[1], '--panel', '64x64']); "
        "print(sorted(m for m in sys.modules if m.startswith(('google.genai', 'openai', 'pydantic')))); sys.exit(rc)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "captions: template backend (offline), 6 composite(s) captioned" in out.stdout
    records = [json.loads(line) for line in (tmp_path / "demo" / "metadata.jsonl").read_text().splitlines()]
    assert {r["caption"]["backend"] for r in records} == {"template"}


def test_cli_ad_hoc_server_gets_no_environment_key(tmp_path):
    """--caption-base-url is for a local power user; the environment's key still stays with its own endpoint."""
    sample = mvic_module("sources.sample").ensure_sample_data()
    env = {**os.environ, "GEMINI_API_KEY": KEY, "MVIC_SETTINGS": str(tmp_path / "settings.json")}
    key_file = tmp_path / "proxy.key"
    key_file.write_text("file-key-abcdef\n")
    base = [
        sys.executable,
        "-m",
        "mvic",
        "build",
        "--source",
        "mvimgnet",
        "--input",
        str(sample),
        "--panel",
        "64x64",
        "--max-sets",
        "1",
        "--caption-backend",
        "gemini",
    ]
    with CaptionServer() as server:
        runs = [
            subprocess.run(
                base
                + [
                    "--out",
                    str(tmp_path / f"ds{n}"),
                    "--caption-base-url",
                    server.url,
                    "--caption-cache-dir",
                    str(tmp_path / f"c{n}"),
                ]
                + extra,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            for n, extra in enumerate([[], ["--key-file", str(key_file)]])
        ]
        both = subprocess.run(
            base + ["--caption-endpoint", "gemini", "--caption-base-url", server.url],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert [h.get("x-goog-api-key") for h in server.headers] == ["no-key-needed", "file-key-abcdef"]
    assert "(no key)" in runs[0].stdout and f"key from key file {key_file}" in runs[1].stdout
    assert both.returncode == 2 and "give --caption-endpoint NAME or --caption-base-url URL, not both" in both.stderr
