import os
import sys
from pathlib import Path

# Before anything loads torch here or in a child (ComfyUI servers, sd-scripts and the trainer inherit it):
# OpenMP threads that wait for work sleep instead of spinning. Under `pytest -n auto` each worker and its
# children run torch with one thread per core, so an idle spinning thread takes a core from the other
# worker: two tiny CLI trainings at once took 93-121 s each, 42 s with PASSIVE (31 s alone either way) on
# the 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from comfy_harness import ComfyServer, comfyui_paths  # noqa: E402

# MVIC_REQUIRE_REAL=1 (set by .ci/run): CI has prepared ComfyUI, sd-scripts and Chromium, so a test that
# skips means a real tier did not run; every skip then fails the run, whatever its reason or wording, so
# skips added later are covered too. Unset (a newcomer's checkout): those tests skip with their reason.
REQUIRE_REAL_ENV = "MVIC_REQUIRE_REAL"
_TIER_RESULTS = pytest.StashKey[dict]()  # marker -> {node id: outcome}
_COMFY_REQUESTS_BEFORE = pytest.StashKey[int]()  # ComfyServer.requests_sent when the test's setup began
_CONFIG: pytest.Config | None = None  # pytest_runtest_logreport gets no config

# The real tiers, for the summary: a test counts under a tier when it carries the marker (mark new
# real-tier tests with it), uses one of the fixtures, or its node id starts with one of the prefixes; and
# under real-ComfyUI also when its setup or call sent a request to a real ComfyUI (whatever fixture started it).
TIERS = {
    "real_comfyui": (
        "real-ComfyUI",
        ("comfyui", "servers", "frontend", "node_training"),
        (
            "tests/test_sampler.py::test_sampler_in_real_comfyui",
            "tests/test_training_sdscripts.py::test_the_lora_applies_in_real_comfyui",
        ),
    ),
    "real_sd_scripts": (
        "real-sd-scripts",
        ("cli_training", "node_training"),
        (
            "tests/test_training_sdscripts.py::",
            "tests/test_export.py::test_sd_scripts_own_loader",
            "tests/test_probe_cache.py::",
            "tests/test_workflows_comfyui.py::test_train_lora",
            "tests/test_workflows_comfyui.py::test_full_pipeline",
        ),
    ),
    "browser": ("browser", ("frontend",), ("tests/test_workflows_browser.py::",)),
}


# pytest-xdist (`pytest -n auto`, as the README runs it): the tests that load the 9.5 GB zero T5-XXL (real
# sd-scripts training, FLUX sampling through T5) run in one worker, one at a time, so that two never hold it
# at once on a 24 GiB machine; that group is the longest, so it starts first. Every other file runs whole in
# one worker, so its module fixtures (ComfyUI servers) start once. Add new T5-loading tests here.
T5XXL = "t5xxl"
T5XXL_PREFIXES = (
    "tests/test_training_sdscripts.py::test_node_trains",  # and the rest of the `trained` fixture's users:
    "tests/test_training_sdscripts.py::test_the_",
    "tests/test_training_sdscripts.py::test_captions_really",
    "tests/test_training_sdscripts.py::test_interrupt",
    "tests/test_training_sdscripts.py::test_sigkill",
    "tests/test_training_previews.py::test_cli_train",
    "tests/test_training_previews.py::test_trainer_node",
    "tests/test_fp8_sdscripts.py::test_launcher_trains",
    "tests/test_workflows_comfyui.py::",
    "tests/test_workflow_outputs_comfyui.py::",
    "tests/test_diffusers_engine.py::",
    "tests/test_training_ux.py::test_cli_train_shows_phases",
    "tests/test_training_ux.py::test_trainer_node_shows_phases",
    "tests/test_import_composites.py::test_the_imported_dataset_trains",
)
# T5-group tests after which a ComfyUI server (up until its module ends) holds its own copy of the zero
# T5-XXL: the file's cached pages then only duplicate it (see pytest_runtest_teardown).
T5XXL_COPIED_BY_SERVER = (
    "tests/test_workflow_outputs_comfyui.py::",
    "tests/test_workflows_comfyui.py::test_text_to_views",
    "tests/test_workflows_comfyui.py::test_image_to_views",
    "tests/test_workflows_comfyui.py::test_full_pipeline",
)
MAX_AUTO_WORKERS = 4  # beyond that the T5 group alone sets the pace; each worker may hold a ComfyUI server


def require_real() -> bool:
    return os.environ.get(REQUIRE_REAL_ENV, "").strip() not in ("", "0")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under `-n N` (xdist's default `--dist load`): whole files per worker, and one group of all the T5
    tests, first. (xdist's own `loadgroup` no longer groups under pytest 9, which keeps node ids elsewhere.)"""
    if config.getvalue("dist") != "load":
        return None  # another --dist, chosen on the command line
    from xdist.scheduler import LoadScopeScheduling

    class T5GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return T5XXL if nodeid.startswith(T5XXL_PREFIXES) else nodeid.split("::", 1)[0]

    config.option.loadscopereorder = False  # keep the collection order: the T5 group first
    return T5GroupScheduling(config, log)


def pytest_configure(config):
    for marker, (label, _, _) in TIERS.items():
        config.addinivalue_line("markers", f"{marker}: a {label} test (counted in the real-tier summary)")
    config.stash[_TIER_RESULTS] = {marker: {} for marker in TIERS}
    global _CONFIG
    _CONFIG = config


def pytest_report_header(config):
    sd = os.environ.get("SD_SCRIPTS_DIR") or "unset"
    lines = [
        f"real tiers: COMFYUI_DIR={os.environ.get('COMFYUI_DIR') or 'unset'}  SD_SCRIPTS_DIR={sd}  "
        f"MVIC_CHROMIUM={os.environ.get('MVIC_CHROMIUM') or 'unset'}"
    ]
    lines.append(
        f"{REQUIRE_REAL_ENV}=1: every skip fails the run"
        if require_real()
        else f"{REQUIRE_REAL_ENV} unset: tests of a real tier that is not configured are skipped"
    )
    return lines


@pytest.hookimpl(tryfirst=True)  # before -m deselects by these markers, and before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker, (_, fixtures, prefixes) in TIERS.items():
            if item.get_closest_marker(marker) is None and (
                any(name in item.fixturenames for name in fixtures) or item.nodeid.startswith(prefixes)
            ):
                item.add_marker(marker)
    items.sort(key=lambda item: not item.nodeid.startswith(T5XXL_PREFIXES))  # stable: the T5 group first


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _as_required_failure(report) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under {REQUIRE_REAL_ENV}=1, where every real tier was prepared and nothing may skip.\n"
        f"Skip reason: {_skip_reason(report)}"
    )


@pytest.hookimpl(tryfirst=True)  # before the fixtures are set up: a server they start is this test's
def pytest_runtest_setup(item):
    item.stash[_COMFY_REQUESTS_BEFORE] = ComfyServer.requests_sent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if ComfyServer.requests_sent > item.stash.get(_COMFY_REQUESTS_BEFORE, ComfyServer.requests_sent):
        report.keywords["real_comfyui"] = 1  # counted by pytest_runtest_logreport, also from xdist workers
    if require_real() and report.skipped and not hasattr(report, "wasxfail"):
        _as_required_failure(report)


def pytest_runtest_logreport(report):
    """Counted from the reports (they carry the tier markers as keywords), so that the counts are right in
    the process that prints them also when pytest-xdist runs the tests in worker processes."""
    results = _CONFIG.stash[_TIER_RESULTS]
    for marker in TIERS:
        if marker in report.keywords:
            outcomes = results[marker]
            # A test's outcome: its first failure or skip, else "passed" once its call phase passed.
            if report.outcome != "passed":
                outcomes.setdefault(report.nodeid, report.outcome)
            elif report.when == "call":
                outcomes.setdefault(report.nodeid, "passed")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped at import (`pytest.importorskip`, `allow_module_level`) fails too."""
    outcome = yield
    report = outcome.get_result()
    if require_real() and report.skipped:
        _as_required_failure(report)


def _tier_counts(config) -> dict[str, dict[str, int]]:
    counts = {}
    for marker, (label, _, _) in TIERS.items():
        outcomes = list(config.stash[_TIER_RESULTS][marker].values())
        counts[label] = {name: outcomes.count(name) for name in ("passed", "failed", "skipped")}
    return counts


def _whole_suite(config) -> bool:
    """The whole suite ran: not narrowed to some files, -k or -m, and not --collect-only."""
    return (
        config.args_source == pytest.Config.ArgsSource.TESTPATHS
        and not config.option.collectonly
        and not config.option.keyword
        and not config.option.markexpr
    )


def pytest_sessionfinish(session, exitstatus):
    """Under CI a tier that ran no test at all (its tests renamed, moved or not collected) fails the run."""
    if require_real() and _whole_suite(session.config) and session.exitstatus == 0:
        if any(count["passed"] == 0 for count in _tier_counts(session.config).values()):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.option.collectonly:
        return
    terminalreporter.section("real tiers")
    for label, count in _tier_counts(config).items():
        line = f"{label}: {count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped"
        if require_real() and _whole_suite(config) and exitstatus == 0 and count["passed"] == 0:
            line += f"  <- no {label} test ran: {REQUIRE_REAL_ENV}=1 fails the run"
        terminalreporter.line(line)


@pytest.fixture(scope="session")
def cli_training(tmp_path_factory):
    """The CLI's real training run (trainer_data.run_cli_training), shared by the tests that read it."""
    from sdscripts_env import SKIP_REASON, sd_scripts_paths
    from trainer_data import run_cli_training

    if sd_scripts_paths() is None:
        pytest.skip(SKIP_REASON)
    return run_cli_training(tmp_path_factory.mktemp("cli_training"))


@pytest.fixture(scope="session")
def node_training(tmp_path_factory):
    """The trainer node's real training run in a real ComfyUI (trainer_data.run_node_training), shared."""
    from sdscripts_env import SKIP_REASON, sd_scripts_paths
    from trainer_data import run_node_training

    if sd_scripts_paths() is None:
        pytest.skip(SKIP_REASON)
    if comfyui_paths() is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON)")
    return run_node_training(tmp_path_factory.mktemp("node_training"))


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory):
    """A running real ComfyUI with this pack installed (skips when COMFYUI_DIR is unset)."""
    paths = comfyui_paths()
    if paths is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout to run it")
    server = ComfyServer(*paths, base_dir=tmp_path_factory.mktemp("comfy_base"))
    server.start()
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a T5-group test, unless the group goes on and nothing else holds a copy: drop the zero T5-XXL's
    pages from the page cache. The file is sparse (28 KB on disk), so reading it again costs no disk, but its
    read holes held 8.4 GB of the 14 GB page cache, pushing out the venvs' libraries, which do come from disk
    (iowait in a warm CI run: 143 s, and 51 s with the drop). They stay while the group goes on: sd-scripts
    and diffusers read them again, and zero-filling them anew cost each training 5-13 s."""
    yield
    if item.nodeid.startswith(T5XXL_PREFIXES) and not _t5xxl_pages_reused(item, nextitem):
        import tiny_models

        for path in tiny_models.default_cache_dir().glob("zero-t5xxl-*.safetensors"):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _t5xxl_pages_reused(item, nextitem) -> bool:
    group_goes_on = nextitem is not None and nextitem.nodeid.startswith(T5XXL_PREFIXES)
    return group_goes_on and not item.nodeid.startswith(T5XXL_COPIED_BY_SERVER)
