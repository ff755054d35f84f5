"""The trainer and the sampler's LoRA handling against untrusted input, and the trainer's pre-flight
(issues 9 and 10), without a ComfyUI server: extra_args allow-list, checkout fingerprints and
local trainer settings, secrets kept from the child, dataset pre-flight (captions, markers,
outside paths, copied folders), IS_CHANGED, LoRA metadata bounds, file modes, disk space.
The same cases through a real ComfyUI are in test_hostile_trainer.py."""

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from hostile import sentinel_checkout
from packload import mvic_module, node_class
from sdscripts_env import sd_scripts_paths
from trainer_data import mvic_cli, small_dataset

extra_args = mvic_module("training.extra_args")
environment = mvic_module("training.environment")
checkout = mvic_module("training.checkout")
settings_mod = mvic_module("settings")
preflight = mvic_module("training.preflight")
trainer = mvic_module("training.trainer")
arguments = mvic_module("training.arguments")
lora_file = mvic_module("lora_file")
plan = mvic_module("sampling.plan")
process = mvic_module("training.process")


# ------------------------------------------------------------------------------ extra_args


@pytest.mark.parametrize(
    "text",
    [
        "--t5xxl_max_token_length 64",
        "--optimizer_type Adafactor --optimizer_args relative_step=False scale_parameter=False warmup_init=False",
        '--optimizer_args "betas=(0.9, 0.999)" --lr_scheduler cosine_with_restarts --lr_scheduler_num_cycles 3',
        '--network_args "train_blocks=single" --lr_warmup_steps=10%',
        "--noise_offset -0.05 --timestep_sampling sigmoid --sigmoid_scale 1.0 --gradient_checkpointing --loss_type "
        "huber",
        "",
    ],
)
def test_training_options_pass_the_allow_list(text):
    assert extra_args.check_extra_args(text) == arguments.parse_extra_args(text)


@pytest.mark.parametrize(
    "text, named",
    [
        ("--output_dir /models/diffusion_models --output_name flux1-dev", "--output_dir"),
        ("--output_d /models", "--output_d"),  # argparse would expand the abbreviation
        ("--huggingface_repo_id me/x --save_state_to_huggingface", "--huggingface_repo_id"),
        ("--log_with wandb", "--log_with"),
        ("--wandb_api_key k", "--wandb_api_key"),
        ("--log_tracker_config http://127.0.0.1:9/x.toml", "--log_tracker_config"),
        ("--config_file /tmp/x.toml", "--config_file"),
        ("--dataset_config /tmp/other.toml", "--dataset_config"),
        ("--sample_prompts /home/me/.ssh/id_rsa", "--sample_prompts"),
        ("--resume /tmp/state", "--resume"),
        ("--network_module evil", "--network_module"),
        ("--lr_scheduler_type evil.Scheduler", "--lr_scheduler_type"),
        ("--optimizer_type bitsandbytes.optim.Evil", "--optimizer_type"),  # a module path makes sd-scripts import it
        ("--noise_offset /etc/passwd", "--noise_offset"),
        ("--network_args path=/etc/passwd", "--network_args"),
        ("--gradient_checkpointing --output_dir=/x", "--output_dir"),
        ("-h", "-h"),
    ],
)
def test_options_naming_outputs_paths_or_services_are_refused(text, named):
    with pytest.raises(extra_args.ExtraArgsRefused) as err:
        extra_args.check_extra_args(text)
    message = str(err.value)
    assert "LoRATrainer.extra_args" in message and named in message and "--unsafe-extra-args" in message


def test_every_allowed_option_is_a_real_option_of_sd_scripts():
    """Exact names only: an allowed name that sd-scripts lacked would be expanded by argparse's prefix matching."""
    found = sd_scripts_paths()
    if found is None:
        pytest.skip("needs SD_SCRIPTS_DIR")
    checkout_dir, python = found
    code = (
        "import sys, json; sys.path.insert(0, '.'); import flux_train_network as f; "
        "print(json.dumps([o for a in f.setup_parser()._actions for o in a.option_strings]))"
    )
    out = subprocess.run([python, "-c", code], cwd=checkout_dir, capture_output=True, text=True, timeout=300)
    options = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert extra_args.ALLOWED - options == set()


def test_the_cli_accepts_anything_only_when_asked():
    assert extra_args.check_extra_args("--output_dir /x", unsafe=True) == ["--output_dir", "/x"]
    with pytest.raises(extra_args.ExtraArgsRefused):
        extra_args.check_extra_args("--output_dir /x")


# ------------------------------------------------------------------------------ trainers in local settings


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "settings.json"
    monkeypatch.setenv("MVIC_SETTINGS", str(path))
    monkeypatch.delenv("SD_SCRIPTS_DIR", raising=False)
    monkeypatch.delenv("SD_SCRIPTS_PYTHON", raising=False)
    monkeypatch.setenv("MVIC_CONFIG", str(tmp_path / "no-legacy.json"))
    return path


def _fake(tmp_path, name="sd"):
    sentinel = sentinel_checkout(tmp_path / name)
    return tmp_path / name, str(tmp_path / name / "venv" / "bin" / "python"), sentinel


def test_a_workflow_can_only_pick_a_configured_trainer(settings_file, tmp_path):
    folder, python, sentinel = _fake(tmp_path)
    empty = settings_mod.load_settings()
    with pytest.raises(environment.TrainerEnvironmentError) as err:
        environment.resolve_trainer(str(folder), empty)
    assert "LoRATrainer.sd_scripts_dir" in str(err.value) and "config add-trainer" in str(err.value)
    configured = checkout.with_trainer(empty, "mine", folder, python)
    resolved = environment.resolve_trainer("(default)", configured)
    assert (resolved.checkout, resolved.python, resolved.name) == (folder.resolve(), python, "mine")
    assert environment.resolve_trainer("", configured) == resolved  # '' = workflows saved before the dropdown
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "change", ["library/train_util.py", "networks/lora_flux.py", "library/new_module.py", "flux_train_network.py"]
)
def test_a_checkout_changed_since_setup_is_refused_with_how_to_record_it(settings_file, tmp_path, change):
    folder, python, sentinel = _fake(tmp_path)
    (folder / "networks").mkdir()
    (folder / "networks" / "lora_flux.py").write_text("x = 1\n")
    configured = checkout.with_trainer(settings_mod.load_settings(), "mine", folder, python)
    (folder / change).write_text("import os  # changed\n")
    with pytest.raises(environment.TrainerEnvironmentError) as err:
        environment.resolve_trainer("mine", configured)
    assert "changed since it was set up" in str(err.value)
    assert f"python -m mvic config add-trainer mine --sd-scripts {folder.resolve()} --python {python}" in str(err.value)
    again = checkout.with_trainer(configured, "mine", folder, python)  # what that command does
    assert environment.resolve_trainer("mine", again).name == "mine"
    (folder / "README.md").write_text("docs and data do not count")
    assert environment.resolve_trainer("mine", again).name == "mine"
    assert not sentinel.exists()


def test_sd_scripts_dir_in_the_environment_is_local_and_checked_when_configured(settings_file, tmp_path, monkeypatch):
    folder, python, _ = _fake(tmp_path)
    monkeypatch.setenv("SD_SCRIPTS_DIR", str(folder))
    monkeypatch.setenv("SD_SCRIPTS_PYTHON", python)
    empty = settings_mod.load_settings()
    unrecorded = environment.resolve_trainer("(default)", empty)
    assert unrecorded.checkout == folder.resolve() and unrecorded.fingerprint == ""  # not configured: taken as it is
    configured = checkout.with_trainer(empty, "mine", folder, python)
    (folder / "library" / "train_util.py").write_text("changed = True\n")
    with pytest.raises(environment.TrainerEnvironmentError, match="changed since it was set up"):
        environment.resolve_trainer("(default)", configured)


def test_the_old_pack_config_is_explained(settings_file, tmp_path, monkeypatch):
    legacy = tmp_path / "mvic_config.json"
    legacy.write_text(
        json.dumps({"sd_scripts_dir": "/opt/sd-scripts", "sd_scripts_python": "/opt/sd-scripts/venv/bin/python"})
    )
    monkeypatch.setenv("MVIC_CONFIG", str(legacy))
    with pytest.raises(environment.TrainerEnvironmentError) as err:
        environment.resolve_trainer("(default)", settings_mod.load_settings())
    assert (
        "python -m mvic config add-trainer sd-scripts --sd-scripts /opt/sd-scripts --python "
        "/opt/sd-scripts/venv/bin/python" in str(err.value)
    )


def test_config_cli_adds_and_removes_trainers(tmp_path):
    folder, python, sentinel = _fake(tmp_path)
    env = {**os.environ, "MVIC_SETTINGS": str(tmp_path / "s.json")}
    added = mvic_cli("config", "add-trainer", "mine", "--sd-scripts", str(folder), "--python", python, env=env)
    assert added.returncode == 0, added.stderr
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["default_trainer"] == "mine"
    assert data["trainers"]["mine"]["fingerprint"] == checkout.fingerprint(folder)
    assert f"mine (default): {folder.resolve()} with {python}" in mvic_cli("config", "show", env=env).stdout
    bad = mvic_cli("config", "add-trainer", "x", "--sd-scripts", str(tmp_path), "--python", python, env=env)
    assert bad.returncode == 2 and "not an sd-scripts checkout" in bad.stderr
    assert mvic_cli("config", "remove-trainer", "mine", env=env).returncode == 0
    assert json.loads((tmp_path / "s.json").read_text())["trainers"] == {}
    assert not sentinel.exists()  # registering never runs the checkout


def test_setup_trainer_with_an_existing_python_writes_the_settings(tmp_path):
    folder, _, _ = _fake(tmp_path)
    env = {**os.environ, "MVIC_SETTINGS": str(tmp_path / "s.json"), "SD_SCRIPTS_DIR": ""}
    out = mvic_cli("setup-trainer", "--sd-scripts", str(folder), "--python", sys.executable, env=env)
    assert out.returncode == 0, out.stderr
    entry = json.loads((tmp_path / "s.json").read_text())["trainers"]["sd-scripts"]
    assert entry == {
        "sd_scripts_dir": str(folder.resolve()),
        "python": sys.executable,
        "fingerprint": checkout.fingerprint(folder),
    }
    assert "torch" in out.stdout  # the environment report follows


def test_the_training_child_gets_no_api_keys(tmp_path, monkeypatch):
    """run_child with the trainer's child_env: the real child process's environment."""
    secrets = {
        "GEMINI_API_KEY": "g",
        "GOOGLE_API_KEY": "go",
        "OPENAI_API_KEY": "o",
        "HF_TOKEN": "h",
        "WANDB_API_KEY": "w",
        "AWS_SECRET_ACCESS_KEY": "a",
        "MY_LLM_SERVER": "configured as an endpoint's key_env",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    local = settings_mod.LocalSettings(
        path=tmp_path / "s.json",
        endpoints={
            "mine": settings_mod.Endpoint("mine", "openai-compatible", "http://127.0.0.1:1/v1", ("MY_LLM_SERVER",))
        },
    )
    code = "import os, json; print('ENV ' + json.dumps(sorted(os.environ)))"
    result = process.run_child(
        [sys.executable, "-c", code], tmp_path / "log", environment.child_env(settings=local), tmp_path
    )
    seen = json.loads(
        (tmp_path / "log").read_text().rsplit("ENV ", 1)[1].splitlines()[0]
    )  # after the logged command line
    assert result.returncode == 0 and set(secrets) & set(seen) == set()
    assert "TOKENIZERS_PARALLELISM" in seen and "HF_HUB_OFFLINE" in seen


# ------------------------------------------------------------------------------ dataset pre-flight


def _train_without_sd_scripts(tmp_path, dataset, caption_problems="refuse", log=None):
    """Pre-flight problems are found before any environment check: a missing Python is never reached."""
    models = arguments.FluxModelFiles(*(tmp_path / f"{n}.safetensors" for n in ("flux", "clip_l", "t5xxl", "ae")))
    settings = arguments.TrainingSettings(dataset_dir=dataset, models=models, run_dir=tmp_path / "run", output_name="x")
    nowhere = environment.TrainerEnvironment(tmp_path / "no-sd-scripts", str(tmp_path / "no-python"))
    callbacks = trainer.TrainingCallbacks(log=log or (lambda line: None))
    return trainer.train_lora(
        settings, nowhere, tmp_path / "loras", "x", "cpu", callbacks, caption_problems=caption_problems
    )


def test_images_without_captions_are_refused_by_name(tmp_path):
    """Issue 10: a dataset whose captions were all deleted trained with exit 0 and a LoRA claiming the markers."""
    dataset = small_dataset(tmp_path / "ds")
    for caption in (dataset / "images").glob("*.txt"):
        caption.unlink()
    with pytest.raises(trainer.TrainingError) as err:
        _train_without_sd_scripts(tmp_path, dataset)
    message = str(err.value)
    assert "2 of 2 image(s)" in message and "caption_problems" in message
    for image in (dataset / "images").glob("*.png"):
        assert f"images/{image.stem}.txt: no caption for {image.name}" in message
    assert not (tmp_path / "run").exists()


def test_opting_in_trains_without_captions_and_the_lora_claims_no_markers(tmp_path):
    dataset = small_dataset(tmp_path / "ds")
    for caption in (dataset / "images").glob("*.txt"):
        caption.unlink()
    logged = []
    with pytest.raises(
        mvic_module("training.model_files").ModelFileError
    ):  # past the captions, to the (missing) models
        _train_without_sd_scripts(tmp_path, dataset, "warn and train", logged.append)
    assert any("WARNING 2 of 2 image(s)" in line for line in logged)
    meta = trainer.dataset_metadata(preflight.read_dataset(dataset))
    assert "mvic_markers" not in meta and "mvic_trigger" not in meta and json.loads(meta["mvic_layout"])["cols"] == 2


def test_captions_whose_markers_do_not_match_the_layout_are_listed(tmp_path):
    """Issue 10: an edited caption whose markers no longer match the layout was trained without a word."""
    dataset = small_dataset(tmp_path / "ds", names=("a", "b", "c", "d"))
    captions = sorted((dataset / "images").glob("*.txt"))
    captions[0].write_text("mvtok [TWO-VIEWS] a mug; [LEFT] front")  # lost [RIGHT]
    captions[1].write_text("mvtok [TWO-VIEWS] a mug; [TOP-LEFT] front; [TOP-RIGHT] back")  # a 2x2 caption
    captions[2].write_text("mvtok [TWO-VIEWS] a mug; [RIGHT] back; [LEFT] front")  # swapped
    with pytest.raises(trainer.TrainingError) as err:
        _train_without_sd_scripts(tmp_path, dataset)
    message = str(err.value)
    assert "3 of 4 image(s)" in message and "markers [TWO-VIEWS] [LEFT] [RIGHT]" in message
    assert f"images/{captions[0].name}: missing [RIGHT]" in message
    assert (
        f"images/{captions[1].name}: missing [LEFT] [RIGHT]; markers not of this layout: [TOP-LEFT] [TOP-RIGHT]"
        in message
    )
    assert f"images/{captions[2].name}: markers out of order" in message
    assert captions[3].name not in message


def test_a_manifest_naming_outside_files_is_refused_and_nothing_is_copied(tmp_path):
    """Issue 9: a shared dataset's metadata.jsonl named an outside file, which the trainer copied
    into sample_prompts.txt and the LoRA's mvic_trigger."""
    secret = tmp_path / "secret.txt"
    secret.write_text("PRIVATE KEY MATERIAL")
    for value in (str(secret), "../secret.txt", "images/../../secret.txt"):
        dataset = small_dataset(tmp_path / "ds")
        manifest = dataset / "metadata.jsonl"
        records = [json.loads(line) for line in manifest.read_text().splitlines()]
        records[0]["caption_file"] = value
        manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
        with pytest.raises(trainer.TrainingError) as err:
            _train_without_sd_scripts(tmp_path, dataset)
        assert "metadata.jsonl" in str(err.value) and value in str(err.value)
        assert not (tmp_path / "run").exists()
        shutil.rmtree(dataset)


@pytest.mark.parametrize("kind", ["caption", "image"])
def test_links_that_leave_the_dataset_are_refused(tmp_path, kind):
    dataset = small_dataset(tmp_path / "ds")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = sorted((dataset / "images").glob("*.txt" if kind == "caption" else "*.png"))[0]
    moved = outside / target.name
    shutil.move(target, moved)
    target.symlink_to(moved)
    with pytest.raises(trainer.TrainingError, match="link leading out of the dataset folder"):
        _train_without_sd_scripts(tmp_path, dataset)


def test_oversized_captions_and_wrong_image_sizes_are_refused(tmp_path):
    dataset = small_dataset(tmp_path / "ds")
    caption = sorted((dataset / "images").glob("*.txt"))[0]
    caption.write_text("x" * (preflight.MAX_CAPTION_BYTES + 1))
    with pytest.raises(trainer.TrainingError, match="KiB"):
        _train_without_sd_scripts(tmp_path, dataset)
    caption.write_text("mvtok [TWO-VIEWS] a; [LEFT] b; [RIGHT] c")
    from PIL import Image

    Image.new("RGB", (96, 32)).save(sorted((dataset / "images").glob("*.png"))[1])
    with pytest.raises(trainer.TrainingError, match=r"not the layout's 64x32 composite: .*96x32"):
        _train_without_sd_scripts(tmp_path, dataset)


def test_a_copied_dataset_trains_on_the_copy(tmp_path):
    """Issue 10: a copied folder trained on the original's images (absolute image_dir in its dataset.toml)."""
    original = small_dataset(tmp_path / "original")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    edited = sorted((copy / "images").glob("*.txt"))[0]
    edited.write_text("mvtok [TWO-VIEWS] edited in the copy; [LEFT] x; [RIGHT] y")
    assert str(original) in (copy / "dataset.toml").read_text()  # what the saver writes; never used now
    dataset = preflight.read_dataset(copy)
    settings = arguments.TrainingSettings(dataset_dir=copy, models=None, run_dir=tmp_path / "run", output_name="x")
    mvic_module("training.run_dataset").prepare_run_dataset(
        dataset, settings.run_dataset_dir, settings.dataset_config, dataset.state()
    )
    config = settings.dataset_config.read_text()
    assert f'image_dir = "{settings.run_dataset_dir.resolve()}"' in config and str(original) not in config
    for link in settings.run_dataset_dir.glob("*.png"):
        assert link.resolve().parent == (copy / "images").resolve()
    assert (settings.run_dataset_dir / edited.name).read_text().startswith("mvtok [TWO-VIEWS] edited in the copy")


def test_is_changed_never_raises(tmp_path, monkeypatch):
    """Issue 10: IS_CHANGED raised on a dangling symlink (ComfyUI then fails the whole prompt)."""
    monkeypatch.chdir(tmp_path)  # outside ComfyUI, output/ is the working directory
    monkeypatch.setenv("MVIC_SETTINGS", str(tmp_path / "none.json"))
    dataset = small_dataset(tmp_path / "ds")
    node = node_class("MVIC_LoRATrainer")
    before = node.fingerprint_inputs("ds", steps=10)
    (dataset / "images" / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    (dataset / "images" / "dangling.png").symlink_to(tmp_path / "gone.png")
    (dataset / "metadata.jsonl").unlink()
    (dataset / "metadata.jsonl").symlink_to(tmp_path / "gone.jsonl")
    after = node.fingerprint_inputs("ds", steps=10)
    assert isinstance(after, str) and after != before
    for refused in ("/etc", "../.."):  # not readable for this node: it runs, and train() says why
        assert node.fingerprint_inputs(refused, steps=10) != node.fingerprint_inputs(refused, steps=10)
    assert node.fingerprint_inputs(None, steps=10) == node.fingerprint_inputs(None, steps=10)


# ------------------------------------------------------------------------------ LoRA metadata and files


def _lora(tmp_path, name, metadata):
    import tiny_models

    return tiny_models.stand_in_lora(tmp_path / name, metadata)


MARKERS = json.dumps(
    {"prefix": "[FOUR-VIEWS]", "panels": ["[TOP-LEFT]", "[TOP-RIGHT]", "[BOTTOM-LEFT]", "[BOTTOM-RIGHT]"]}
)


@pytest.mark.parametrize(
    "metadata, field",
    [
        (
            {"mvic_layout": json.dumps({"rows": 2, "cols": 2, "panel_width": 65536, "panel_height": 65536})},
            "mvic_layout.panel_width",
        ),
        ({"mvic_layout": json.dumps({"rows": 9, "cols": 9, "panel_width": 64, "panel_height": 64})}, "9x9 panels"),
        (
            {"mvic_layout": json.dumps({"rows": 2, "cols": 2, "panel_width": 100, "panel_height": 64})},
            "mvic_layout.panel_width = 100",
        ),
        ({"mvic_layout": json.dumps({"rows": 4, "cols": 4, "panel_width": 4096, "panel_height": 4096})}, "MP"),
        (
            {"mvic_layout": json.dumps({"rows": "2", "cols": 2, "panel_width": 64, "panel_height": 64})},
            "mvic_layout.rows",
        ),
        ({"mvic_layout": "{not json"}, "mvic_layout is not valid JSON"),
        ({"mvic_markers": "[1, 2"}, "mvic_markers is not valid JSON"),
        ({"mvic_markers": json.dumps({"prefix": "x" * 100, "panels": []})}, "mvic_markers.prefix"),
        (
            {
                "mvic_layout": json.dumps({"rows": 2, "cols": 2, "panel_width": 64, "panel_height": 64}),
                "mvic_markers": json.dumps({"prefix": "[TWO-VIEWS]", "panels": ["[LEFT]", "[RIGHT]"]}),
            },
            "2 markers for 2x2",
        ),
        ({"mvic_trigger": "t" * 100_000}, "mvic_trigger"),
    ],
)
def test_hostile_lora_metadata_is_refused_naming_the_file_and_field(tmp_path, metadata, field):
    lora = _lora(tmp_path, "shared.safetensors", metadata)
    with pytest.raises(lora_file.LoraMetadataError) as err:
        plan.LoraDefaults.from_lora(lora)
    assert str(lora) in str(err.value) and field in str(err.value)


def test_the_diffusers_engine_refuses_hostile_metadata_before_building_anything(tmp_path):
    lora = _lora(
        tmp_path,
        "shared.safetensors",
        {"mvic_layout": json.dumps({"rows": 2, "cols": 2, "panel_width": 65536, "panel_height": 64})},
    )
    engine = mvic_module("sampling.diffusers_engine")
    nowhere = mvic_module("flux_files").FluxModelFiles(
        *(tmp_path / f"missing_{n}.safetensors" for n in ("flux", "clip_l", "t5xxl", "ae"))
    )
    with pytest.raises(lora_file.LoraMetadataError, match="panel_width"):
        engine.sample(nowhere, "x", lora=lora)  # the missing model files are never reached


def test_sampler_layout_widgets_are_bounded_too():
    with pytest.raises(lora_file.LoraMetadataError, match="MP"):
        plan.resolve_layout(8, 8, 4096, 4096, plan.LoraDefaults())
    assert plan.resolve_layout(0, 0, 0, 0, plan.LoraDefaults()).panel_width == 512


def test_a_good_lora_still_configures_the_sampler(tmp_path):
    lora = _lora(
        tmp_path,
        "good.safetensors",
        {
            "mvic_layout": json.dumps({"rows": 2, "cols": 2, "panel_width": 64, "panel_height": 64}),
            "mvic_markers": MARKERS,
            "mvic_trigger": "mvtok",
        },
    )
    defaults = plan.LoraDefaults.from_lora(lora)
    assert (defaults.layout.rows, defaults.layout.panel_width, defaults.markers.panels[3], defaults.trigger) == (
        2,
        64,
        "[BOTTOM-RIGHT]",
        "mvtok",
    )


def test_sampler_lora_path_stays_in_the_loras_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside ComfyUI the loras folder is ./models/loras
    inside = _lora(tmp_path / "models" / "loras" / "mvic", "x.safetensors", {})
    outside = _lora(tmp_path, "outside.safetensors", {})
    sampler = node_class("MVIC_ICLoRASampler")
    assert sampler.validate_inputs(lora_name="(none)", lora_path=str(inside)) is True
    assert sampler.validate_inputs(lora_name="(none)", lora_path="mvic/x.safetensors") is True
    for hostile in (str(outside), "../../outside.safetensors"):
        message = sampler.validate_inputs(lora_name="(none)", lora_path=hostile)
        assert "ICLoRASampler.lora_path" in message and "extra_model_paths.yaml" in message


def test_the_lora_gets_the_umask_mode(tmp_path):
    """Issue 10: files were created 0600 whatever the umask."""
    source = _lora(tmp_path, "out.safetensors", {})
    old = os.umask(0o022)
    try:
        target = lora_file.write_with_metadata(source, tmp_path / "loras" / "a.safetensors", {"mvic_rank": "16"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


# ------------------------------------------------------------------------------ free disk space


def test_a_run_that_cannot_fit_on_disk_is_refused_before_launch(tmp_path):
    """Caches and saved states on a 2 MB file system: refused with the sizes, nothing launched."""
    found = sd_scripts_paths()
    if found is None:
        pytest.skip("needs SD_SCRIPTS_DIR (the environment probe comes before the disk check)")
    if os.geteuid() != 0:
        pytest.skip("mounts a small tmpfs: needs root")
    import tiny_models

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        dataset = small_dataset(tmp_path / "ds", names=tuple("abcdefgh"))
        models = arguments.FluxModelFiles(
            tiny_models.tiny_flux(), tiny_models.tiny_clip_l(), tiny_models.zero_t5xxl(), tiny_models.tiny_ae()
        )
        settings = arguments.TrainingSettings(
            dataset_dir=dataset,
            models=models,
            run_dir=small / "run",
            output_name="x",
            steps=100,
            save_every_n_steps=10,
            extra_args="--t5xxl_max_token_length 64",
        )
        with pytest.raises(trainer.TrainingError) as err:
            trainer.train_lora(
                settings,
                environment.TrainerEnvironment(found[0].resolve(), found[1]),
                tmp_path / "loras",
                "x",
                "cpu",
                trainer.TrainingCallbacks(log=lambda line: None),
            )
        message = str(err.value)
        assert f"not enough free disk space in {small / 'run'}" in message and "save_every_n_steps" in message
        assert not (small / "run").exists()
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_disk_estimate_counts_caches_and_states():
    needs = preflight.estimate_disk(
        images=10,
        cached=4,
        size=(1024, 1024),
        t5_tokens=512,
        parameters=1_000_000,
        steps=1000,
        save_every=250,
        optimizer_8bit=False,
    )
    assert needs.caches == 6 * (16 * 128 * 128 * 4 + 512 * 4096 * 4 + 512 * 8 + 768 * 4)
    assert needs.saves == 5 and needs.per_save == 1_000_000 * 14 and needs.lora == 2_000_000
