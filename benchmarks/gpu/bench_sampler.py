"""ICLoRASampler vs the same graph built from core ComfyUI nodes, in one real ComfyUI server.

Issue 5, acceptance 4: time a 1024² composite, 20 steps, through MVIC_ICLoRASampler and
through UNETLoader/DualCLIPLoader/VAELoader + LoraLoaderModelOnly + ModelSamplingFlux +
CLIPTextEncode + FluxGuidance + BasicGuider + KSamplerSelect + BasicScheduler + RandomNoise +
EmptySD3LatentImage + SamplerCustomAdvanced + VAEDecode, both ending in PreviewImage. Both
graphs share the loader nodes, so ComfyUI loads the models once. Every timed prompt gets a new
seed, as a user re-queuing does: ComfyUI then re-runs only what depends on the seed (our whole
node; the core graph's sampler and decoder). Time = ComfyUI's own execution_start →
execution_success timestamps (ms) from /history. s/step = (t(20 steps) − t(10 steps)) / 10.

    python benchmarks/gpu/bench_sampler.py --comfyui DIR --flux F --clip-l C --t5xxl T --ae A \\
        [--lora L] [--size 1024] [--steps 20] [--repeats 6] [--cpu] --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMPT = (
    "[FOUR-VIEWS] This set of four images shows a light blue canvas bag from four sides; [TOP-LEFT] the front; "
    "[TOP-RIGHT] the left side; [BOTTOM-LEFT] the back; [BOTTOM-RIGHT] the right side"
)


class Server:
    def __init__(self, comfy_dir: Path, base: Path, models: dict[str, Path], cpu: bool, python: str):
        self.base = base
        for sub in ("custom_nodes", "input", "output", "user", "fe", "models"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        pack = base / "custom_nodes" / "ComfyUI-MultiView-ICLoRA"
        if not pack.exists():
            pack.symlink_to(ROOT, target_is_directory=True)
        for kind, path in models.items():  # models/<kind>/<file> -> the real file
            folder = base / "models" / kind
            folder.mkdir(parents=True, exist_ok=True)
            link = folder / path.name
            if not link.exists():
                link.symlink_to(path)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        command = [
            python,
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--base-directory",
            str(base),
            "--front-end-root",
            str(base / "fe"),
            "--database-url",
            "sqlite:///:memory:",
            "--disable-auto-launch",
            "--disable-api-nodes",
            *(["--cpu"] if cpu else []),
        ]
        self.log_path = base / "comfyui.log"
        self.process = subprocess.Popen(
            command,
            cwd=comfy_dir,
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"ComfyUI did not start:\n{self.log_path.read_text()[-5000:]}")
            try:
                self.get("/system_stats")
                return
            except OSError:
                time.sleep(0.3)

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as response:
            return json.loads(response.read())

    def run(self, prompt: dict) -> dict:
        body = json.dumps({"prompt": prompt, "client_id": uuid.uuid4().hex}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/prompt", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                prompt_id = json.loads(response.read())["prompt_id"]
        except urllib.error.HTTPError as exc:
            sys.exit(f"/prompt refused: {exc.read().decode(errors='replace')[:3000]}")
        while True:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history:
                entry = history[prompt_id]
                stamps = {event: data.get("timestamp") for event, data in entry["status"]["messages"]}
                if "execution_success" not in stamps:
                    sys.exit(
                        f"prompt failed: {json.dumps(entry['status'])[:3000]}\n{self.log_path.read_text()[-5000:]}"
                    )
                entry["seconds"] = (stamps["execution_success"] - stamps["execution_start"]) / 1000
                return entry
            if self.process.poll() is not None:
                sys.exit(f"ComfyUI died:\n{self.log_path.read_text()[-5000:]}")
            time.sleep(0.05)

    def stop(self):
        self.process.terminate()
        self.process.wait(30)


def loaders(names: dict[str, str]) -> dict:
    return {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": names["diffusion_models"], "weight_dtype": "default"},
        },
        "2": {
            "class_type": "DualCLIPLoader",
            "inputs": {
                "clip_name1": names["clip_l"],
                "clip_name2": names["t5xxl"],
                "type": "flux",
                "device": "default",
            },
        },
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": names["vae"]}},
    }


def ours(names, size, steps, seed, lora_path, show_prompt=False) -> dict:
    graph = loaders(names)
    graph["10"] = {
        "class_type": "MVIC_ICLoRASampler",
        "inputs": {
            "model": ["1", 0],
            "clip": ["2", 0],
            "vae": ["3", 0],
            "prompt": PROMPT,
            "seed": seed,
            "steps": steps,
            "guidance": 3.5,
            "sampler_name": "euler",
            "scheduler": "simple",
            "lora_path": lora_path,
            "lora_strength": 1.0,
            "rows": 2,
            "cols": 2,
            "panel_width": size // 2,
            "panel_height": size // 2,
        },
    }
    graph["11"] = {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}}
    if show_prompt:
        graph["12"] = {"class_type": "PreviewAny", "inputs": {"source": ["10", 2]}}
    return graph


def core(names, size, steps, seed, lora_name, text) -> dict:
    graph = loaders(names)
    model = ["1", 0]
    if lora_name:
        graph["20"] = {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": model, "lora_name": lora_name, "strength_model": 1.0},
        }
        model = ["20", 0]
    graph.update(
        {
            "21": {
                "class_type": "ModelSamplingFlux",
                "inputs": {"model": model, "max_shift": 1.15, "base_shift": 0.5, "width": size, "height": size},
            },
            "22": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["2", 0], "text": text}},
            "23": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["22", 0], "guidance": 3.5}},
            "24": {"class_type": "BasicGuider", "inputs": {"model": ["21", 0], "conditioning": ["23", 0]}},
            "25": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
            "26": {
                "class_type": "BasicScheduler",
                "inputs": {"model": ["21", 0], "scheduler": "simple", "steps": steps, "denoise": 1.0},
            },
            "27": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
            "28": {"class_type": "EmptySD3LatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
            "29": {
                "class_type": "SamplerCustomAdvanced",
                "inputs": {
                    "noise": ["27", 0],
                    "guider": ["24", 0],
                    "sampler": ["25", 0],
                    "sigmas": ["26", 0],
                    "latent_image": ["28", 0],
                },
            },
            "30": {"class_type": "VAEDecode", "inputs": {"samples": ["29", 0], "vae": ["3", 0]}},
            "31": {"class_type": "PreviewImage", "inputs": {"images": ["30", 0]}},
        }
    )
    return graph


def make_random_lora(flux: Path, path: Path, rank: int = 16) -> Path:
    """A rank-`rank` kohya-format LoRA on every linear layer of the FLUX blocks (304 modules, as
    sd-scripts trains), random weights: for timing when no trained LoRA is at hand."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tensors, generator = {}, torch.Generator().manual_seed(0)
    with safe_open(str(flux), "pt") as f:
        for key in f.keys():
            shape = f.get_slice(key).get_shape()
            if (
                not key.startswith(("double_blocks.", "single_blocks."))
                or not key.endswith(".weight")
                or len(shape) != 2
            ):
                continue
            module = "lora_unet_" + key[: -len(".weight")].replace(".", "_")
            tensors[f"{module}.lora_down.weight"] = (
                torch.randn(rank, shape[1], generator=generator) / shape[1] ** 0.5
            ).bfloat16()
            tensors[f"{module}.lora_up.weight"] = (torch.randn(shape[0], rank, generator=generator) * 1e-3).bfloat16()
            tensors[f"{module}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path))
    print(f"random LoRA: {len(tensors) // 3} modules, rank {rank} -> {path}", flush=True)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comfyui", required=True, type=Path)
    parser.add_argument("--python", default=sys.executable)
    for name in ("flux", "clip-l", "t5xxl", "ae"):
        parser.add_argument(f"--{name}", required=True, type=Path)
    parser.add_argument("--lora", type=Path)
    parser.add_argument("--random-lora", type=Path, help="make (if missing) and use a random rank-16 LoRA at this path")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mvic-bench-sampler"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    if args.random_lora:
        args.lora = args.random_lora if args.random_lora.exists() else make_random_lora(args.flux, args.random_lora)
    models = {"diffusion_models": args.flux, "text_encoders": args.clip_l, "vae": args.ae}
    names = {
        "diffusion_models": args.flux.name,
        "clip_l": args.clip_l.name,
        "t5xxl": args.t5xxl.name,
        "vae": args.ae.name,
    }
    t0 = time.monotonic()
    server = Server(args.comfyui, args.work, models, args.cpu, args.python)
    (args.work / "models" / "text_encoders" / args.t5xxl.name).unlink(missing_ok=True)
    (args.work / "models" / "text_encoders" / args.t5xxl.name).symlink_to(args.t5xxl)
    lora_path, lora_name = "", ""
    if args.lora:
        (args.work / "models" / "loras").mkdir(parents=True, exist_ok=True)
        link = args.work / "models" / "loras" / args.lora.name
        link.unlink(missing_ok=True)
        link.symlink_to(args.lora)
        lora_path, lora_name = str(args.lora), args.lora.name
    result = {
        "started_s": round(time.monotonic() - t0, 1),
        "size": args.size,
        "steps": args.steps,
        "lora": lora_name,
        "system": server.get("/system_stats"),
    }
    print(f"ComfyUI up in {result['started_s']} s: {json.dumps(result['system'].get('devices'))}", flush=True)
    try:
        # Warm-up: loads the models once, and tells us the exact text our node sampled with.
        warm = server.run(ours(names, args.size, args.steps, 1, lora_path, show_prompt=True))
        text = warm["outputs"]["12"]["text"][0]
        result["prompt"] = text
        result["warmup_ours_s"] = warm["seconds"]
        result["warmup_core_s"] = server.run(core(names, args.size, args.steps, 1, lora_name, text))["seconds"]
        print(f"warm-up: ours {result['warmup_ours_s']} s, core {result['warmup_core_s']} s", flush=True)
        # Blocks per graph, as a user re-queues one workflow: ComfyUI's cache keeps only the nodes
        # of the last prompt, so alternating graphs prompt by prompt would re-encode the core
        # graph's text every time. The first prompt of a block (after the switch) is not timed.
        times = {"ours": [], "core": [], "ours_half": [], "core_half": []}
        half, seed = args.steps // 2, 100

        def graph(kind, steps, seed):
            if kind == "ours":
                return ours(names, args.size, steps, seed, lora_path)
            return core(names, args.size, steps, seed, lora_name, text)

        for _ in range(2):  # two rounds, so drift shows as a difference between rounds
            for kind in ("ours", "core"):
                seed += 1
                server.run(graph(kind, args.steps, seed))
                for _ in range(args.repeats):
                    seed += 1
                    times[kind].append(server.run(graph(kind, args.steps, seed))["seconds"])
                for _ in range(max(1, args.repeats // 2)):
                    seed += 1
                    times[f"{kind}_half"].append(server.run(graph(kind, half, seed))["seconds"])
                print(
                    f"  {kind}: {args.steps} steps {times[kind][-args.repeats :]}, {half} steps "
                    f"{times[kind + '_half'][-1]}",
                    flush=True,
                )
        result["times_s"] = times
        for kind in ("ours", "core"):
            full, part = statistics.median(times[kind]), statistics.median(times[f"{kind}_half"])
            result[kind] = {
                "median_s": full,
                "min_s": min(times[kind]),
                f"median_{half}_steps_s": part,
                "s_per_step": (full - part) / (args.steps - half),
                "fixed_s": full - args.steps * (full - part) / (args.steps - half),
            }
        result["ratio_median"] = result["ours"]["median_s"] / result["core"]["median_s"]
        result["ratio_min"] = result["ours"]["min_s"] / result["core"]["min_s"]
    finally:
        server.stop()
        result["log_tail"] = server.log_path.read_text(errors="replace")[-3000:]
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("log_tail", "system")}, indent=1))


if __name__ == "__main__":
    main()
