"""Which extra sd-scripts options a workflow may pass (`LoRATrainer.extra_args`).

A workflow is untrusted: an option that names an output or any other path, a config file,
a Python module to import, the network (uploads, logging services) or a secret could
overwrite a model, read a private file or send data away, even though sd-scripts' own
parser accepts it. So the node takes only training knobs from this allow-list: optimizer,
scheduler, noise, timestep sampling, loss, precision and memory switches, and their values
must be plain words, numbers or `key=value` pairs. `python -m mvic train --unsafe-extra-args`
lets a local user pass anything (the CLI's arguments are typed by that user, not shared).
"""

from __future__ import annotations

import re

from .arguments import parse_extra_args

FLAGS = frozenset(
    {
        "--gradient_checkpointing",
        "--cpu_offload_checkpointing",
        "--fp8_base",
        "--fp8_base_unet",
        "--full_bf16",
        "--full_fp16",
        "--highvram",
        "--lowram",
        "--mem_eff_attn",
        "--sdpa",
        "--xformers",
        "--torch_compile",
        "--apply_t5_attn_mask",
        "--noise_offset_random_strength",
        "--ip_noise_gamma_random_strength",
        "--zero_terminal_snr",
        "--debiased_estimation_loss",
        "--scale_v_pred_loss_like_noise_pred",
        "--fused_backward_pass",
        "--masked_loss",
        "--persistent_data_loader_workers",
        "--disable_mmap_load_safetensors",
        "--no_half_vae",
        "--split_mode",
        "--flip_aug",
        "--color_aug",
        "--skip_cache_check",
    }
)
NUMBERS = frozenset(
    {
        "--learning_rate",
        "--unet_lr",
        "--max_grad_norm",
        "--lr_warmup_steps",
        "--lr_decay_steps",
        "--lr_scheduler_num_cycles",
        "--lr_scheduler_power",
        "--lr_scheduler_timescale",
        "--lr_scheduler_min_lr_ratio",
        "--noise_offset",
        "--multires_noise_iterations",
        "--multires_noise_discount",
        "--adaptive_noise_scale",
        "--ip_noise_gamma",
        "--min_timestep",
        "--max_timestep",
        "--huber_c",
        "--huber_scale",
        "--min_snr_gamma",
        "--scale_weight_norms",
        "--network_dropout",
        "--gradient_accumulation_steps",
        "--sigmoid_scale",
        "--discrete_flow_shift",
        "--guidance_scale",
        "--logit_mean",
        "--logit_std",
        "--mode_scale",
        "--t5xxl_max_token_length",
        "--blocks_to_swap",
        "--caption_dropout_rate",
        "--max_data_loader_n_workers",
        "--vae_batch_size",
        "--text_encoder_batch_size",
        "--train_batch_size",
        "--v_pred_like_loss",
    }
)
WORDS = frozenset(
    {  # a bare name: no '.', so sd-scripts never imports a module named by a workflow
        "--optimizer_type",
        "--lr_scheduler",
        "--timestep_sampling",
        "--weighting_scheme",
        "--model_prediction_type",
        "--mixed_precision",
        "--save_precision",
        "--loss_type",
        "--huber_schedule",
        "--dynamo_backend",
    }
)
KEY_VALUES = frozenset({"--optimizer_args", "--lr_scheduler_args", "--network_args"})  # nargs="*": key=value each
ALLOWED = FLAGS | NUMBERS | WORDS | KEY_VALUES

# Why an option is refused, for the error message (first match wins; anything else: "not on the list").
_REASONS = (
    (
        ("output", "save_model_as", "save_every", "save_last", "save_n_epoch", "save_state"),
        "it decides what is written where",
    ),
    (
        ("huggingface", "async_upload", "wandb", "log_with", "log_tracker", "log_prefix", "log_config", "logging"),
        "it uploads or logs to a service",
    ),
    (
        (
            "config",
            "dataset",
            "data_dir",
            "in_json",
            "resume",
            "weights",
            "vae",
            "model",
            "clip_l",
            "t5xxl",
            "ae",
            "tokenizer",
            "console_log_file",
            "sample_prompts",
            "nvme",
            "network_module",
            "lr_scheduler_type",
            "deepspeed",
        ),
        "it names a file, a folder or a Python module to load",
    ),
)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?$")
_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_KEY_VALUE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}=[A-Za-z0-9_.,+\-\[\]() ]{0,200}$")
UNSAFE_HINT = 'a local user can pass any option with `python -m mvic train --unsafe-extra-args "..."`'


class ExtraArgsRefused(ValueError):
    """An extra argument a workflow may not pass; the message names it and what to do."""


def _reason(option: str) -> str:
    for words, reason in _REASONS:
        if any(word in option for word in words):
            return reason
    return "it is not on the list of training options a workflow may set"


def _value_ok(option: str, value: str) -> bool:
    if option in NUMBERS:
        return bool(_NUMBER.match(value))
    if option in WORDS:
        return bool(_WORD.match(value))
    return bool(_KEY_VALUE.match(value))


def check_extra_args(text: str, what: str = "LoRATrainer.extra_args", unsafe: bool = False) -> list[str]:
    """The arguments of `text`, when every option is on the allow-list with a plain value."""
    args = parse_extra_args(text)
    if unsafe:
        return args
    expected = 0  # values still owed to the last option (-1: any number of key=value words)
    option = ""
    for token in args:
        name, has_inline, inline = token.partition("=") if token.startswith("--") else (token, False, "")
        if token.startswith("-") and not (expected and _NUMBER.match(token)):
            option = name
            if option not in ALLOWED:
                raise ExtraArgsRefused(
                    f"{what}: {option} is not allowed in a workflow ({_reason(option)}). Allowed are training options "
                    f"such as --optimizer_type, --lr_scheduler, --noise_offset, --timestep_sampling, --loss_type "
                    f"(full list: mvic/training/extra_args.py); {UNSAFE_HINT}"
                )
            expected = 0 if option in FLAGS else (-1 if option in KEY_VALUES else 1)
            if has_inline:
                if option in FLAGS or option in KEY_VALUES:
                    raise ExtraArgsRefused(f"{what}: write {option} without '=' ({token!r})")
                _check_value(option, inline, what)
                expected = 0
            continue
        if expected == 0:
            raise ExtraArgsRefused(f"{what}: {token!r} is not an option's value; options start with --")
        _check_value(option, token, what)
        expected = expected if expected < 0 else 0
    if expected > 0:
        raise ExtraArgsRefused(f"{what}: {option} needs a value")
    return args


def _check_value(option: str, value: str, what: str) -> None:
    if not _value_ok(option, value):
        kinds = {**dict.fromkeys(NUMBERS, "a number"), **dict.fromkeys(WORDS, "a plain name (no '.', '/' or spaces)")}
        kind = kinds.get(option, "key=value")
        raise ExtraArgsRefused(f"{what}: {option} {value!r}: the value must be {kind}; {UNSAFE_HINT}")
