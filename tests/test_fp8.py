"""FP8 matmuls for the frozen FLUX linears, on the CPU: trainers/fp8_linear.py (torch's CPU
`_scaled_mm` computes the same function as the GPU kernel, slowly), the fp8_matmul plan
(mvic/training/fp8.py) and the several-GPU checks (mvic/training/multi_gpu.py)."""

import importlib

import pytest
from packload import PACK_NAME, mvic_module

torch = pytest.importorskip("torch")
fp8_linear = importlib.import_module(f"{PACK_NAME}.trainers.fp8_linear")
fp8 = mvic_module("training.fp8")
multi_gpu = mvic_module("training.multi_gpu")
presets = mvic_module("training.presets")
arguments = mvic_module("training.arguments")

H200 = {"index": 0, "name": "NVIDIA H200", "total_gib": 139.8, "capability": "9.0"}
RTX4060 = {"index": 0, "name": "NVIDIA GeForce RTX 4060", "total_gib": 7.6, "capability": "8.9"}
A100 = {"index": 1, "name": "NVIDIA A100-SXM4-80GB", "total_gib": 79.2, "capability": "8.0"}


def relative_error(out, ref):
    return ((out.double() - ref).norm() / ref.norm()).item()


def bf16_linear(n_in, n_out, seed):
    torch.manual_seed(seed)
    return torch.nn.Linear(n_in, n_out).to(torch.bfloat16)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_and_input_gradient_match_float64(seed):
    linear = bf16_linear(320, 192, seed)
    fast = fp8_linear.Linear.from_linear(linear)
    x = (torch.randn(2, 48, 320) * (1 + 10 * torch.rand(2, 48, 1))).requires_grad_(True)  # rows of different scale
    out = fast(x)
    w, b = linear.weight.double(), linear.bias.double()
    ref = torch.nn.functional.linear(x.double(), w, b)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 48, 192) and torch.isfinite(out).all()
    assert relative_error(out, ref) < 0.06  # e4m3: 3 mantissa bits on both operands (~3.5% measured)
    grad = torch.randn(2, 48, 192) * (1 + 10 * torch.rand(2, 48, 1))
    out.backward(grad.to(out.dtype))
    assert x.grad.dtype == x.dtype and relative_error(x.grad, grad.double() @ w) < 0.06
    assert fast.weight.grad is None and not fast.weight.requires_grad


def test_weights_are_stored_once_in_e4m3_with_channel_scales():
    linear = bf16_linear(64, 32, 3)
    fast = fp8_linear.Linear.from_linear(linear)
    assert fast.weight.dtype == torch.float8_e4m3fn and fast.weight.shape == (32, 64)
    assert fast.weight_scale.shape == (1, 32) and fast.weight_scale.dtype == torch.float32
    assert relative_error(fast.dequantized(torch.float32), linear.weight.double()) < 0.04
    assert fast.weight.float().abs().amax(dim=1).eq(448).all()  # each channel uses e4m3's full range


def test_an_e4m3_weight_is_kept_bit_for_bit():
    linear = bf16_linear(64, 32, 4).to(torch.float8_e4m3fn)  # an fp8 checkpoint, or sd-scripts' --fp8_base cast
    fast = fp8_linear.Linear.from_linear(linear)
    assert torch.equal(fast.weight.view(torch.uint8), linear.weight.view(torch.uint8))
    assert torch.equal(fast.weight_scale, torch.ones(1, 32))


def test_model_casts_keep_the_storage_dtypes():
    """sd-scripts casts the whole model: .to(fp8) for --fp8_base, .to(bf16) for mixed precision."""
    fast = fp8_linear.Linear.from_linear(bf16_linear(64, 32, 5))
    model = torch.nn.Sequential(fast, torch.nn.LayerNorm(32))
    for cast in (
        lambda m: m.to(torch.float8_e4m3fn),
        lambda m: m.to(dtype=torch.bfloat16),
        lambda m: m.half(),
        lambda m: m.float(),
    ):
        cast(model)
        assert (fast.weight.dtype, fast.weight_scale.dtype, fast.bias.dtype) == (
            torch.float8_e4m3fn,
            torch.float32,
            torch.bfloat16,
        )
    assert model[1].weight.dtype == torch.float32  # everything else is cast as before


def test_rows_not_divisible_by_16_fall_back_to_bf16():
    linear = bf16_linear(64, 32, 6)
    fast = fp8_linear.Linear.from_linear(linear)
    x = torch.randn(3, 64)
    ref = torch.nn.functional.linear(x.double(), linear.weight.double(), linear.bias.double())
    assert relative_error(fast(x), ref) < 0.04


class Modulation(torch.nn.Module):  # named like FLUX's: its linear acts on one vector per sample
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 192)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.img_mod = Modulation()
        self.qkv = torch.nn.Linear(64, 192)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(128, 64)
        )
        self.norm = torch.nn.LayerNorm(64)


class TinyFlux(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.img_in = torch.nn.Linear(16, 64)
        self.double_blocks = torch.nn.ModuleList([Block(), Block()])
        self.single_blocks = torch.nn.ModuleList([Block()])


def test_swap_replaces_the_token_linears_and_lora_still_finds_them():
    model = TinyFlux().to(torch.bfloat16)
    assert fp8_linear.swap_linears(model) == 9  # 3 per block; modulation and img_in stay
    assert isinstance(model.double_blocks[0].qkv, fp8_linear.Linear) and isinstance(
        model.single_blocks[0].mlp[2], fp8_linear.Linear
    )
    assert type(model.double_blocks[1].img_mod.lin) is torch.nn.Linear and type(model.img_in) is torch.nn.Linear
    # sd-scripts' networks/lora_flux.py picks LoRA targets by class name
    targets = [m for m in model.modules() if m.__class__.__name__ == "Linear"]
    assert len(targets) == 13


def test_compiled_equals_eager_and_lora_gets_gradients():
    """What sd-scripts runs: a LoRA branch in bf16 around the FP8 product, under torch.compile."""
    linear = bf16_linear(128, 64, 7)
    fast = fp8_linear.Linear.from_linear(linear)
    down = torch.nn.Linear(128, 16, bias=False)
    up = torch.nn.Linear(16, 64, bias=False)
    torch.nn.init.normal_(up.weight, std=0.1)

    def forward(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fast(x) + up(down(x))

    x = torch.randn(32, 128)
    eager_x = x.clone().requires_grad_(True)
    eager = forward(eager_x)
    eager.float().square().sum().backward()
    eager_grads = (eager_x.grad.clone(), down.weight.grad.clone())
    down.weight.grad = up.weight.grad = None
    compiled_x = x.clone().requires_grad_(True)
    compiled = torch.compile(forward)(compiled_x)
    compiled.float().square().sum().backward()
    assert relative_error(compiled, eager.double()) < 0.02
    assert relative_error(compiled_x.grad, eager_grads[0].double()) < 0.02
    assert relative_error(down.weight.grad, eager_grads[1].double()) < 0.02 and down.weight.grad.abs().sum() > 0


def test_the_launcher_side_refuses_without_fp8_tensor_cores():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the CPU message is what is tested here")
    assert fp8_linear.fp8_unavailable_reason() == "no CUDA GPU is visible"


# -- the plan: fp8_matmul auto / on / off --------------------------------------------------------------


@pytest.mark.parametrize(
    "choice, preset, gpus, compiling, on",
    [
        ("auto", "80", [H200], True, True),  # measured: 0.434 vs 0.462 s/step (H200)
        ("auto", "80", [H200], False, False),  # eager: the quantisation runs in separate kernels
        ("auto", "24", [H200], False, False),  # measured: 1.25 s/step FP8 vs 1.09 sd-scripts' fp8_base
        ("auto", "24", [H200], True, False),  # not measured compiled
        ("auto", "8", [RTX4060], False, False),
        ("auto", "80", [A100], True, False),  # no FP8 tensor cores: bf16, no error
        ("auto", "cpu", [], True, False),
        ("off", "80", [H200], True, False),
        ("on", "24", [RTX4060], False, True),
    ],
)
def test_plan(choice, preset, gpus, compiling, on):
    chosen = presets.CPU_PRESET if preset == "cpu" else presets.PRESETS[preset]
    plan = fp8.plan_fp8(choice, chosen, gpus, compiling)
    assert plan.matmul == on, plan.reason
    assert ("--fp8-matmul" in plan.launcher_args()) == on


@pytest.mark.parametrize(
    "gpus, says",
    [
        ([], "no CUDA GPU is visible"),
        ([A100], "GPU 1 (NVIDIA A100-SXM4-80GB) has compute capability 8.0"),
        ([H200, A100], "compute capability 8.0"),
    ],
)
def test_on_is_refused_where_fp8_cannot_run(gpus, says):
    with pytest.raises(fp8.Fp8Refused) as refused:
        fp8.check_fp8_choice("on", gpus)
    assert says in str(refused.value) and "8.9" in str(refused.value) and "fp8_matmul" in str(refused.value)
    fp8.check_fp8_choice("auto", gpus)  # auto falls back to bf16 without an error
    with pytest.raises(ValueError, match="choose one of auto, on, off"):
        fp8.check_fp8_choice("yes", [H200])


def test_t5_goes_to_e4m3_for_the_presets_whose_peak_is_t5_caching():
    for name, preset in presets.PRESETS.items():
        plan = fp8.plan_fp8("off", preset, [H200], False)
        assert plan.t5 == (name in ("12", "8"))
        assert ("--fp8-t5" in plan.launcher_args()) == plan.t5


def test_launcher_arguments_come_before_the_script(tmp_path):
    command = arguments.launch_command(
        "py", tmp_path, tmp_path / "launch.py", 7, ["--a"], (0, 1), launcher_args=["--fp8-matmul", "--fp8-t5"]
    )
    assert command[:4] == ["py", str(tmp_path / "launch.py"), "--watch-parent", "7"]
    split = command.index("--")
    assert {"--accelerate", "--fp8-matmul", "--fp8-t5"} <= set(command[:split])
    assert command[split + 1 :] == [str(tmp_path / "flux_train_network.py"), "--a"]


# -- several GPUs -------------------------------------------------------------------------------------


def test_gpu_ids_parse_and_bad_values_name_the_input():
    assert multi_gpu.parse_gpu_ids(" 0, 1 ") == (0, 1) and multi_gpu.parse_gpu_ids("") == ()
    for bad in ("0;1", "gpu0", "0,0"):
        with pytest.raises(multi_gpu.MultiGpuRefused, match="gpu_ids"):
            multi_gpu.parse_gpu_ids(bad)


def test_gpu_selection_must_be_visible():
    assert multi_gpu.check_gpu_selection((1,), [H200, A100]) == [A100]
    assert multi_gpu.check_gpu_selection((), [H200]) == [H200]
    with pytest.raises(multi_gpu.MultiGpuRefused, match=r"GPU 1 is not visible .*visible: 0"):
        multi_gpu.check_gpu_selection((0, 1), [H200])


@pytest.mark.parametrize("name", ["16", "12", "8"])
def test_block_swap_with_several_gpus_is_refused_with_the_reason(name):
    with pytest.raises(multi_gpu.MultiGpuRefused) as refused:
        multi_gpu.check_multi_gpu((0, 1), presets.PRESETS[name], [])
    assert f"'{name}' preset swaps" in str(refused.value) and "one GPU" in str(refused.value)
    multi_gpu.check_multi_gpu((0,), presets.PRESETS[name], [])  # one GPU: fine


def test_block_swap_from_extra_args_is_refused_too():
    multi_gpu.check_multi_gpu((0, 1), presets.PRESETS["24"], [])
    with pytest.raises(multi_gpu.MultiGpuRefused, match="swaps 4 FLUX blocks"):
        multi_gpu.check_multi_gpu((0, 1), presets.PRESETS["24"], ["--blocks_to_swap", "4"])
    with pytest.raises(multi_gpu.MultiGpuRefused, match="cpu_offload_checkpointing"):
        multi_gpu.check_multi_gpu((0, 1), presets.PRESETS["48"], ["--cpu_offload_checkpointing"])


@pytest.mark.parametrize(
    "preset, gpu_ids, says",
    [
        (
            "24",
            (0, 1),
            "out of memory with the '24' preset on GPUs 0,1 (each holds the whole model): choose the '16' VRAM "
            "preset on one GPU",
        ),
        (
            "48",
            (0, 1),
            "out of memory with the '48' preset on GPUs 0,1 (each holds the whole model): choose the '24' VRAM preset.",
        ),
        ("24", (), "out of memory with the '24' preset: choose the '16' VRAM preset."),
    ],
)
def test_out_of_memory_names_the_preset_and_a_way_out(tmp_path, preset, gpu_ids, says):
    trainer = mvic_module("training.trainer")
    process = mvic_module("training.process")
    result = process.ChildResult(returncode=1, log_path=tmp_path / "train.log", out_of_memory=True)
    with pytest.raises(trainer.TrainingError) as error:
        trainer._raise_for_failure(
            result,
            arguments.TrainingSettings(
                dataset_dir=tmp_path, models=None, run_dir=tmp_path, output_name="x", gpu_ids=gpu_ids
            ),
            presets.PRESETS[preset],
        )
    assert says in str(error.value)
