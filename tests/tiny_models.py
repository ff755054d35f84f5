"""Deterministic random model files for the integration tests.

No real weights can be downloaded in this project's environments, so the tests
run kohya sd-scripts (FLUX LoRA training) and ComfyUI against models made here:

* ``tiny_flux``   -- FLUX.1-dev transformer, BFL key layout, real widths
                     (hidden 3072, 24 heads, guidance embedding) but only
                     1 double + 1 single block; random weights, bf16 (~1.1 GB).
* ``tiny_clip_l`` -- CLIP-L text encoder (ViT-L/14 text tower) at full size,
                     random weights, HF ``text_model.*`` + ``text_projection.weight``
                     layout as in the usual ``clip_l.safetensors``; fp16 (~246 MB).
* ``tiny_ae``     -- FLUX autoencoder at full size, BFL ``ae.safetensors`` layout
                     (``encoder.*`` / ``decoder.*``), random weights, fp32 (~335 MB).
* ``zero_t5xxl``  -- T5-v1.1-XXL encoder at full size with all-zero weights, HF
                     layout as in ``t5xxl_fp16.safetensors``, bf16.  Written as a sparse
                     file: ~9.5 GB apparent size, a few KB on disk (``du``).  Readers
                     still materialise it in RAM when they load it.

Every file is generated once into a cache directory (argument, else
``$MVIC_TEST_MODELS``, else ``~/.cache/mvic-test-models``), written to a temporary
file and renamed into place, and regenerated only when missing (or of the wrong
size).  Same inputs give byte-identical files (seeded per tensor name).

Only torch (imported lazily, inside the functions) and numpy are needed; the
files are written by a small streaming safetensors writer so that no model is
ever held whole in memory.  Importing this module is cheap and needs no pytest.

Command line: ``python tests/tiny_models.py [CACHE_DIR]`` generates all four.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["default_cache_dir", "tiny_flux", "tiny_clip_l", "tiny_ae", "zero_t5xxl", "all_models"]

GENERATOR_VERSION = 1
ENV_VAR = "MVIC_TEST_MODELS"

# weight init: normal(0, GAIN / sqrt(fan_in)); biases zero; norm scales one.
# GAIN < 1 keeps activations shrinking a little per layer, so outputs stay finite
# in bf16/fp16 whatever the input.
_INIT_GAIN = 0.5

PathLike = Union[str, os.PathLike]

# (name, shape, init) with init one of:
#   "w"     normal(0, _INIT_GAIN / sqrt(fan_in))   (linear / conv weights)
#   "emb"   normal(0, 0.02)                        (embedding tables)
#   "ones"  1.0                                    (norm weights / scales)
#   "zeros" 0.0                                    (biases; written as holes)
Spec = Tuple[str, Tuple[int, ...], str]

_ST_DTYPES = {
    # name: (safetensors dtype, bytes per element)
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "bfloat16": ("BF16", 2),
}
_DTYPE_ALIASES = {
    "fp32": "float32",
    "f32": "float32",
    "float32": "float32",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
    "float16": "float16",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
}
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


# --------------------------------------------------------------------------- #
# cache handling
# --------------------------------------------------------------------------- #


def default_cache_dir() -> Path:
    """``$MVIC_TEST_MODELS`` if set, else ``~/.cache/mvic-test-models``."""
    env = os.environ.get(ENV_VAR)
    if env:  # absolute: the tests link these files into model folders elsewhere
        return Path(env).expanduser().absolute()
    return Path.home() / ".cache" / "mvic-test-models"


def _cache_dir(cache_dir: Optional[PathLike]) -> Path:
    d = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    return d


def _norm_dtype(dtype: str) -> str:
    try:
        return _DTYPE_ALIASES[str(dtype).replace("torch.", "").lower()]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}; use fp32, fp16 or bf16") from None


def _layout(specs: Sequence[Spec], dtype: str, metadata: dict) -> Tuple[bytes, int]:
    """Safetensors header bytes (length prefix included) and the data size."""
    st_dtype, itemsize = _ST_DTYPES[dtype]
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    offset = 0
    for name, shape, _ in specs:
        n = int(np.prod(shape, dtype=np.int64)) * itemsize
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw, offset


def _seed(tag: str, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{tag}/{name}".encode()).digest()[:8], "little") & (2**63 - 1)


def _write_safetensors(path: Path, specs: Sequence[Spec], dtype: str, tag: str, metadata: dict) -> None:
    """Stream a safetensors file, one tensor at a time; zero tensors become holes."""
    import torch

    tdtype = getattr(torch, dtype)
    head, data_size = _layout(specs, dtype, metadata)
    with open(path, "wb") as f:
        f.write(head)
        for name, shape, init in specs:
            numel = int(np.prod(shape, dtype=np.int64))
            nbytes = numel * _ST_DTYPES[dtype][1]
            if init == "zeros":
                f.seek(nbytes, os.SEEK_CUR)  # sparse hole, reads back as zeros
                continue
            if init == "ones":
                t = torch.ones(numel, dtype=tdtype)
            else:
                if init == "emb":
                    std = 0.02
                elif init == "w":
                    fan_in = int(np.prod(shape[1:], dtype=np.int64))
                    std = _INIT_GAIN / float(np.sqrt(fan_in))
                else:  # pragma: no cover - programming error
                    raise ValueError(init)
                g = torch.Generator().manual_seed(_seed(tag, name))
                t = torch.empty(numel, dtype=torch.float32).normal_(0.0, std, generator=g).to(tdtype)
            f.write(t.view(torch.uint8).numpy())
            del t
        f.truncate(len(head) + data_size)  # materialise trailing holes


def _ensure(
    cache_dir: Optional[PathLike],
    filename: str,
    specs: Sequence[Spec],
    dtype: str,
    tag: str,
    metadata: Optional[dict] = None,
) -> Path:
    d = _cache_dir(cache_dir)
    path = d / filename
    meta = {"format": "pt", "generator": f"mvic tests/tiny_models.py v{GENERATOR_VERSION}", "model": tag}
    meta.update(metadata or {})
    head, data_size = _layout(specs, dtype, meta)
    expected = len(head) + data_size
    if path.is_file() and path.stat().st_size == expected:
        return path
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        _write_safetensors(Path(tmp), specs, dtype, tag, meta)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _linear(name: str, out_f: int, in_f: int, bias: bool = True) -> List[Spec]:
    specs: List[Spec] = [(f"{name}.weight", (out_f, in_f), "w")]
    if bias:
        specs.append((f"{name}.bias", (out_f,), "zeros"))
    return specs


# --------------------------------------------------------------------------- #
# FLUX.1 transformer (BFL layout)
# --------------------------------------------------------------------------- #


def flux_specs(
    txt_width: int = 4096,
    vec_width: int = 768,
    hidden: int = 3072,
    heads: int = 24,
    mlp_ratio: float = 4.0,
    depth: int = 1,
    depth_single: int = 1,
    guidance: bool = True,
    in_channels: int = 64,
) -> List[Spec]:
    """Tensor list of a FLUX.1 transformer in BFL naming (``flux1-dev.safetensors``)."""
    h = hidden
    mlp = int(h * mlp_ratio)
    head_dim = h // heads
    s: List[Spec] = []
    s += _linear("img_in", h, in_channels)
    s += _linear("time_in.in_layer", h, 256) + _linear("time_in.out_layer", h, h)
    s += _linear("vector_in.in_layer", h, vec_width) + _linear("vector_in.out_layer", h, h)
    if guidance:
        s += _linear("guidance_in.in_layer", h, 256) + _linear("guidance_in.out_layer", h, h)
    s += _linear("txt_in", h, txt_width)
    for i in range(depth):
        p = f"double_blocks.{i}."
        for stream in ("img", "txt"):
            s += _linear(f"{p}{stream}_mod.lin", 6 * h, h)
            s += _linear(f"{p}{stream}_attn.qkv", 3 * h, h)
            s += [
                (f"{p}{stream}_attn.norm.query_norm.scale", (head_dim,), "ones"),
                (f"{p}{stream}_attn.norm.key_norm.scale", (head_dim,), "ones"),
            ]
            s += _linear(f"{p}{stream}_attn.proj", h, h)
            s += _linear(f"{p}{stream}_mlp.0", mlp, h) + _linear(f"{p}{stream}_mlp.2", h, mlp)
    for i in range(depth_single):
        p = f"single_blocks.{i}."
        s += _linear(f"{p}linear1", 3 * h + mlp, h)
        s += _linear(f"{p}linear2", h, h + mlp)
        s += [(f"{p}norm.query_norm.scale", (head_dim,), "ones"), (f"{p}norm.key_norm.scale", (head_dim,), "ones")]
        s += _linear(f"{p}modulation.lin", 3 * h, h)
    s += _linear("final_layer.linear", in_channels, h)
    s += _linear("final_layer.adaLN_modulation.1", 2 * h, h)
    return s


def tiny_flux(cache_dir: Optional[PathLike] = None, txt_width: int = 4096, vec_width: int = 768) -> Path:
    """FLUX.1-dev-style transformer: hidden 3072, 24 heads, 1 double + 1 single block, bf16.

    ``txt_width`` / ``vec_width`` set the input widths of ``txt_in`` (T5 features,
    4096) and ``vector_in`` (CLIP-L pooled, 768).  ComfyUI reads both from the
    file; sd-scripts' FLUX trainer only supports the defaults.
    """
    specs = flux_specs(txt_width=txt_width, vec_width=vec_width)
    name = f"tiny-flux1-dev-d1s1-txt{txt_width}-vec{vec_width}-bf16-v{GENERATOR_VERSION}.safetensors"
    return _ensure(cache_dir, name, specs, "bfloat16", f"tiny-flux1-dev-txt{txt_width}-vec{vec_width}")


# --------------------------------------------------------------------------- #
# CLIP-L text encoder (HF CLIPTextModel layout + text_projection)
# --------------------------------------------------------------------------- #


def clip_l_specs(
    vocab: int = 49408, positions: int = 77, width: int = 768, layers: int = 12, ff: int = 3072
) -> List[Spec]:
    s: List[Spec] = [
        ("text_model.embeddings.token_embedding.weight", (vocab, width), "emb"),
        ("text_model.embeddings.position_embedding.weight", (positions, width), "emb"),
    ]
    for i in range(layers):
        p = f"text_model.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s += _linear(f"{p}self_attn.{proj}", width, width)
        s += [(f"{p}layer_norm1.weight", (width,), "ones"), (f"{p}layer_norm1.bias", (width,), "zeros")]
        s += _linear(f"{p}mlp.fc1", ff, width) + _linear(f"{p}mlp.fc2", width, ff)
        s += [(f"{p}layer_norm2.weight", (width,), "ones"), (f"{p}layer_norm2.bias", (width,), "zeros")]
    s += [
        ("text_model.final_layer_norm.weight", (width,), "ones"),
        ("text_model.final_layer_norm.bias", (width,), "zeros"),
    ]
    s += _linear("text_projection", width, width, bias=False)
    return s


def tiny_clip_l(cache_dir: Optional[PathLike] = None, dtype: str = "fp16") -> Path:
    """CLIP-L text encoder, full size (123 M params), random weights.

    Layout of the common single-file ``clip_l.safetensors``: ``text_model.*`` as in
    ``transformers.CLIPTextModel`` plus ``text_projection.weight``; what sd-scripts'
    ``--clip_l`` and ComfyUI's CLIPLoader / DualCLIPLoader take.
    """
    dt = _norm_dtype(dtype)
    name = f"random-clip-l-{_SHORT[dt]}-v{GENERATOR_VERSION}.safetensors"
    return _ensure(cache_dir, name, clip_l_specs(), dt, "random-clip-l")


# --------------------------------------------------------------------------- #
# FLUX autoencoder (BFL ae.safetensors layout)
# --------------------------------------------------------------------------- #


def _resnet(p: str, c_in: int, c_out: int) -> List[Spec]:
    s: List[Spec] = [(f"{p}norm1.weight", (c_in,), "ones"), (f"{p}norm1.bias", (c_in,), "zeros")]
    s += [(f"{p}conv1.weight", (c_out, c_in, 3, 3), "w"), (f"{p}conv1.bias", (c_out,), "zeros")]
    s += [(f"{p}norm2.weight", (c_out,), "ones"), (f"{p}norm2.bias", (c_out,), "zeros")]
    s += [(f"{p}conv2.weight", (c_out, c_out, 3, 3), "w"), (f"{p}conv2.bias", (c_out,), "zeros")]
    if c_in != c_out:
        s += [(f"{p}nin_shortcut.weight", (c_out, c_in, 1, 1), "w"), (f"{p}nin_shortcut.bias", (c_out,), "zeros")]
    return s


def _attn(p: str, c: int) -> List[Spec]:
    s: List[Spec] = [(f"{p}norm.weight", (c,), "ones"), (f"{p}norm.bias", (c,), "zeros")]
    for n in ("q", "k", "v", "proj_out"):
        s += [(f"{p}{n}.weight", (c, c, 1, 1), "w"), (f"{p}{n}.bias", (c,), "zeros")]
    return s


def _conv(name: str, c_out: int, c_in: int, k: int = 3) -> List[Spec]:
    return [(f"{name}.weight", (c_out, c_in, k, k), "w"), (f"{name}.bias", (c_out,), "zeros")]


def ae_specs(
    ch: int = 128,
    ch_mult: Sequence[int] = (1, 2, 4, 4),
    num_res_blocks: int = 2,
    z_channels: int = 16,
    img_channels: int = 3,
) -> List[Spec]:
    """Tensor list of the FLUX (LDM-style KL) autoencoder, BFL naming."""
    s: List[Spec] = []
    # encoder
    s += _conv("encoder.conv_in", ch, img_channels)
    block_in = ch
    for level, mult in enumerate(ch_mult):
        block_out = ch * mult
        for b in range(num_res_blocks):
            s += _resnet(f"encoder.down.{level}.block.{b}.", block_in, block_out)
            block_in = block_out
        if level != len(ch_mult) - 1:
            s += _conv(f"encoder.down.{level}.downsample.conv", block_in, block_in)
    s += _resnet("encoder.mid.block_1.", block_in, block_in)
    s += _attn("encoder.mid.attn_1.", block_in)
    s += _resnet("encoder.mid.block_2.", block_in, block_in)
    s += [("encoder.norm_out.weight", (block_in,), "ones"), ("encoder.norm_out.bias", (block_in,), "zeros")]
    s += _conv("encoder.conv_out", 2 * z_channels, block_in)
    # decoder
    block_in = ch * ch_mult[-1]
    s += _conv("decoder.conv_in", block_in, z_channels)
    s += _resnet("decoder.mid.block_1.", block_in, block_in)
    s += _attn("decoder.mid.attn_1.", block_in)
    s += _resnet("decoder.mid.block_2.", block_in, block_in)
    for level in reversed(range(len(ch_mult))):
        block_out = ch * ch_mult[level]
        for b in range(num_res_blocks + 1):
            s += _resnet(f"decoder.up.{level}.block.{b}.", block_in, block_out)
            block_in = block_out
        if level != 0:
            s += _conv(f"decoder.up.{level}.upsample.conv", block_in, block_in)
    s += [("decoder.norm_out.weight", (block_in,), "ones"), ("decoder.norm_out.bias", (block_in,), "zeros")]
    s += _conv("decoder.conv_out", img_channels, block_in)
    return s


def tiny_ae(cache_dir: Optional[PathLike] = None, dtype: str = "fp32") -> Path:
    """FLUX AE at full size (83.8 M params, 16 latent channels), random weights.

    BFL ``ae.safetensors`` layout (``encoder.*``, ``decoder.*``), as read by
    sd-scripts' ``flux_utils.load_ae`` (``--ae``) and ComfyUI's VAELoader.
    """
    dt = _norm_dtype(dtype)
    name = f"random-flux-ae-{_SHORT[dt]}-v{GENERATOR_VERSION}.safetensors"
    return _ensure(cache_dir, name, ae_specs(), dt, "random-flux-ae")


# --------------------------------------------------------------------------- #
# T5-v1.1-XXL encoder, all zeros, sparse
# --------------------------------------------------------------------------- #


def t5xxl_specs(
    vocab: int = 32128,
    d_model: int = 4096,
    d_ff: int = 10240,
    heads: int = 64,
    d_kv: int = 64,
    layers: int = 24,
    buckets: int = 32,
) -> List[Spec]:
    inner = heads * d_kv
    s: List[Spec] = [("shared.weight", (vocab, d_model), "zeros")]
    for i in range(layers):
        p = f"encoder.block.{i}.layer."
        for n in ("q", "k", "v"):
            s.append((f"{p}0.SelfAttention.{n}.weight", (inner, d_model), "zeros"))
        s.append((f"{p}0.SelfAttention.o.weight", (d_model, inner), "zeros"))
        if i == 0:
            s.append((f"{p}0.SelfAttention.relative_attention_bias.weight", (buckets, heads), "zeros"))
        s.append((f"{p}0.layer_norm.weight", (d_model,), "zeros"))
        s.append((f"{p}1.DenseReluDense.wi_0.weight", (d_ff, d_model), "zeros"))
        s.append((f"{p}1.DenseReluDense.wi_1.weight", (d_ff, d_model), "zeros"))
        s.append((f"{p}1.DenseReluDense.wo.weight", (d_model, d_ff), "zeros"))
        s.append((f"{p}1.layer_norm.weight", (d_model,), "zeros"))
    s.append(("encoder.final_layer_norm.weight", (d_model,), "zeros"))
    return s


def zero_t5xxl(cache_dir: Optional[PathLike] = None, dtype: str = "bf16") -> Path:
    """T5-v1.1-XXL encoder (4.76 G params) with every weight zero, as a sparse file.

    Layout of ``t5xxl_fp16.safetensors``: ``shared.weight`` + ``encoder.*`` of
    ``transformers.T5EncoderModel`` (no ``encoder.embed_tokens.weight``: it is tied to
    ``shared``), as sd-scripts' ``--t5xxl`` and ComfyUI's DualCLIPLoader (type
    flux) read it.  Apparent size 9.5 GB (fp16/bf16), a few KB on disk; loading it
    still costs 9.5 GB of RAM (19 GB if a reader casts it to fp32).  Its output
    is all zeros for any prompt.  bf16 by default: sd-scripts trains in bf16 and
    reads a bf16 file without a conversion pass (10 s instead of 21 s per start on
    the 2-core machine); the key layout is the same.
    """
    dt = _norm_dtype(dtype)
    if dt == "float32":
        raise ValueError("zero_t5xxl: use fp16 or bf16 (fp32 would be a 19 GB file to load)")
    name = f"zero-t5xxl-{_SHORT[dt]}-v{GENERATOR_VERSION}.safetensors"
    return _ensure(cache_dir, name, t5xxl_specs(), dt, "zero-t5xxl")


# --------------------------------------------------------------------------- #


def all_models(cache_dir: Optional[PathLike] = None) -> dict:
    """Generate (if needed) all four files; returns {"flux", "clip_l", "ae", "t5xxl"} -> Path."""
    return {
        "flux": tiny_flux(cache_dir),
        "clip_l": tiny_clip_l(cache_dir),
        "ae": tiny_ae(cache_dir),
        "t5xxl": zero_t5xxl(cache_dir),
    }


def _main(argv: Optional[Iterable[str]] = None) -> int:
    import sys
    import time

    args = list(sys.argv[1:] if argv is None else argv)
    cache = args[0] if args else None
    t0 = time.time()
    for key, path in all_models(cache).items():
        st = os.stat(path)
        print(f"{key:7s} {path}  apparent={st.st_size / 2**20:.1f} MiB  on-disk={st.st_blocks * 512 / 2**20:.1f} MiB")
    print(f"done in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())


def stand_in_lora(path: PathLike, metadata: dict) -> Path:
    """A one-module kohya FLUX LoRA of zeros (it changes nothing) carrying `metadata` in its
    header, for sampler tests that need our LoRA metadata but no trained weights."""
    path = Path(path)
    tensors = {
        "lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": [4, 3072],
        "lora_unet_double_blocks_0_img_attn_proj.lora_up.weight": [3072, 4],
        "lora_unet_double_blocks_0_img_attn_proj.alpha": [],
    }
    header, offset = {"__metadata__": {k: str(v) for k, v in metadata.items()}}, 0
    for name, shape in tensors.items():
        size = int(np.prod(shape)) * 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path
