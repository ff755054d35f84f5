"""GeminiCaptioner: structured marker captions for every composite (mvic.captions.captioner).

A workflow is untrusted data, so it only *names* an endpoint: `backend` lists "template"
(offline) and the captioning endpoints of this machine's local settings (built in: gemini,
openai; more with `python -m mvic config add-endpoint`). Which server receives the images,
which key goes with it and where the cache lives are set locally, never by a widget.

The slots that once took a server address, a key file and a cache folder stay where they
were (ComfyUI restores a saved workflow's widget values by position), but take only the
empty value: a non-empty one, from an old or a hostile workflow, is refused by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from comfy_api.latest import io

from ..mvic.captions.backends.request import DEFAULT_MODELS
from ..mvic.captions.prompt import INPUT_MODES, PROMPT_VERSION
from ..mvic.settings import BUILTIN_ENDPOINTS, SettingsError
from .comfy_io import Progress, category, check_interrupt, local_settings

log = logging.getLogger(__name__)
TEMPLATE = "template"
NODE = "GeminiCaptioner"
# Retired widget -> how to do the same on this machine.
RETIRED = {
    "base_url": "add the server on this machine: `python -m mvic config add-endpoint NAME --base-url URL` "
    "(--backend gemini for a Gemini-protocol server), then choose NAME in backend",
    "key_file": "give the endpoint its key on this machine: `python -m mvic config add-endpoint NAME --base-url URL "
    "--key-file FILE` (or --key-env VAR), then choose NAME in backend",
    "cache_dir": "set the cache folder on this machine: `python -m mvic config set caption_cache_dir DIR`",
}
RETIRED_TOOLTIP = (
    "retired: servers, keys and the cache folder are set on this machine (python -m mvic config); stays empty"
)


def endpoint_choices() -> list[str]:
    """'template' and every endpoint configured here. define_schema must not raise (it would take
    the node out of /object_info): a broken settings file lists the built-ins, and the run then
    names the file and what is wrong with it."""
    try:
        return [TEMPLATE, *local_settings().all_endpoints()]
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("GeminiCaptioner lists only the built-in endpoints: %s", exc)
        return [TEMPLATE, *BUILTIN_ENDPOINTS]


def _shown(value) -> str:
    text = str(value)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def check_widgets(backend, model="", base_url="", key_file="", cache_dir="", trigger=""):
    """The workflow's values, checked before anything else: the local Endpoint it names, or
    None for the template backend. ValueError names the widget and the local fix."""
    from ..mvic.captions.captioner import check_model_name, check_trigger

    for name, value in (("base_url", base_url), ("key_file", key_file), ("cache_dir", cache_dir)):
        if value not in (None, ""):
            raise ValueError(
                f"{NODE}.{name} = {_shown(value)}: a workflow cannot choose this any more; "
                f"{RETIRED[name]}; then clear {name}"
            )
    check_trigger(str(trigger or ""), f"{NODE}.trigger")
    check_model_name(str(model or ""), f"{NODE}.model")
    if backend in (TEMPLATE, None):  # None: linked, so only known when the node runs (and checked again then)
        return None
    if backend == "openai-compatible":  # the old widget value: which server it meant was in base_url
        raise ValueError(
            f"{NODE}.backend = 'openai-compatible' comes from a workflow saved before endpoints were set "
            "locally: choose 'openai' for api.openai.com, or add your server on this machine with "
            "`python -m mvic config add-endpoint NAME --base-url URL` and choose NAME"
        )
    try:
        return local_settings().endpoint(str(backend))
    except SettingsError as exc:
        raise ValueError(f"{NODE}.backend: {exc}") from None


def _fingerprint(settings: dict) -> str:
    """What can change the output besides the linked composites: the widgets, the prompt
    version, and the named endpoint as configured here (address, key source, whether its
    key is set, the key file's mtime; never the key itself) and the cache folder."""
    inputs = GeminiCaptioner.INPUT_TYPES()
    widgets = {**inputs["required"], **inputs["optional"]}
    # A widget ComfyUI did not pass counts as its default, as it does for the node's function.
    state = {name: settings.get(name, spec[1]["default"]) for name, spec in widgets.items() if name != "composites"}
    state.update(prompt_version=PROMPT_VERSION)
    if state["backend"] != TEMPLATE:
        try:
            local = local_settings()
            endpoint = local.endpoint(str(state["backend"]))
            env_keys = [name for name in endpoint.key_env if os.environ.get(name)]
            state.update(
                endpoint=endpoint.to_json(),
                cache=local.caption_cache_dir,
                env_keys=env_keys,
                key_stamp=_mtime(endpoint.key_file),
            )
        except SettingsError as exc:  # fingerprint_inputs never raises: the run reports the problem
            state.update(settings_error=str(exc))
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def _mtime(path: str):
    try:
        return os.stat(os.path.expanduser(path)).st_mtime_ns if path else None
    except OSError:
        return "missing"


# Fingerprints whose last run left composites on the template fallback: run those again.
_NEEDS_RETRY: set[str] = set()


class GeminiCaptioner(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MVIC_GeminiCaptioner",
            display_name="Multi-View Captioner",
            category=category("dataset"),
            description=(
                "Marker captions for every composite: template (offline, no key), or a captioning endpoint configured "
                "on this machine (built in: gemini, openai; add Ollama, vLLM, LM Studio... with `python -m mvic config "
                "add-endpoint`). Each endpoint's key comes from its own local settings, never from the workflow."
            ),
            inputs=_caption_inputs(),
            outputs=[
                io.Custom("MV_COMPOSITES").Output(display_name="composites"),
                io.String.Output(display_name="report"),
            ],
        )

    @classmethod
    def validate_inputs(cls, backend, model="", base_url="", key_file="", trigger="", cache_dir=""):
        """Runs when the prompt is queued, before any node: ComfyUI's own list check is replaced by
        ours, which names the widget and the local fix. A linked value arrives as None here and
        is checked again when the node runs."""
        try:
            check_widgets(backend, model, base_url, key_file, cache_dir, trigger)
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def fingerprint_inputs(cls, **inputs):
        fingerprint = _fingerprint(inputs)
        if fingerprint in _NEEDS_RETRY:
            return float("nan")  # never equal: retry the failed composites (the others come from the cache)
        return fingerprint

    @classmethod
    def execute(
        cls,
        composites,
        backend,
        model,
        base_url="",
        key_file="",
        trigger="",
        concurrency=4,
        rpm=10,
        appearance_only=False,
        input_mode="composite",
        cache_dir="",
    ) -> io.NodeOutput:
        from ..mvic.captions.captioner import CaptionSettings, caption_composites

        endpoint = check_widgets(backend, model, base_url, key_file, cache_dir, trigger)
        settings = CaptionSettings(
            endpoint=endpoint,
            model=model.strip(),
            trigger=trigger,
            concurrency=concurrency,
            rpm=rpm,
            appearance_only=appearance_only,
            input_mode=input_mode,
            cache_dir=local_settings().caption_cache_dir if endpoint is not None else "",
        )
        progress = Progress(len(composites.items))
        captioned, report = caption_composites(composites, settings, progress, check_cancel=check_interrupt)
        fingerprint = _fingerprint(
            {
                "backend": backend,
                "model": model,
                "base_url": base_url,
                "key_file": key_file,
                "trigger": trigger,
                "concurrency": concurrency,
                "rpm": rpm,
                "appearance_only": appearance_only,
                "input_mode": input_mode,
                "cache_dir": cache_dir,
            }
        )
        (_NEEDS_RETRY.add if report.failures else _NEEDS_RETRY.discard)(fingerprint)
        return io.NodeOutput(captioned, report.text())


def _caption_inputs() -> list:
    models = ", ".join(f"{b}: {m}" for b, m in DEFAULT_MODELS.items())

    def retired(name):
        return io.Combo.Input(name, options=[""], default="", optional=True, tooltip=RETIRED_TOOLTIP)

    return [
        io.Custom("MV_COMPOSITES").Input("composites", tooltip="the composites from Composite Grid"),
        io.Combo.Input(
            "backend",
            options=endpoint_choices(),
            default=TEMPLATE,
            tooltip=(
                "template: offline, from category and poses. Other names: captioning endpoints set on this "
                "machine (built in: gemini, openai; add one with `python -m mvic config add-endpoint NAME "
                "--base-url URL`)"
            ),
        ),
        io.String.Input("model", default="", tooltip=f"empty = default ({models})"),
        retired("base_url"),
        retired("key_file"),
        io.String.Input("trigger", default="", optional=True, tooltip="word put before every caption"),
        io.Int.Input("concurrency", default=4, min=1, max=64, optional=True, tooltip="requests in flight at once"),
        io.Int.Input(
            "rpm",
            default=10,
            min=0,
            max=100000,
            optional=True,
            tooltip="requests per minute; free Gemini keys allow about 10; 0 = no cap",
        ),
        io.Boolean.Input(
            "appearance_only",
            default=False,
            optional=True,
            tooltip="no pose words for panels the model is unsure about",
        ),
        io.Combo.Input(
            "input_mode",
            options=list(INPUT_MODES),
            default="composite",
            optional=True,
            tooltip="send the composite, or each view as its own image",
        ),
        retired("cache_dir"),
    ]


NODES = [GeminiCaptioner]
