"""Load DINOv2 ViT checkpoints from local files into `jaxwm.nn.vit.ViT` params, and export back.

The file holds the official PyTorch state_dict names of facebookresearch/dinov2's
`DinoVisionTransformer` (Oquab et al., "DINOv2", 2023; registers: Darcet et al. 2024):

  cls_token [1, 1, D]          pos_embed [1, 1 + G*G, D]      register_tokens [1, R, D] (optional)
  mask_token [1, D] (ignored)  patch_embed.proj.weight [D, 3, p, p]   patch_embed.proj.bias [D]
  blocks.{i}.norm1.weight/bias [D]         blocks.{i}.attn.qkv.weight [3D, D] / .bias [3D]
  blocks.{i}.attn.proj.weight [D, D] / .bias     blocks.{i}.ls1.gamma [D]  (LayerScale models)
  blocks.{i}.norm2.weight/bias             blocks.{i}.mlp.fc1.weight [M, D] / .bias [M]
  blocks.{i}.mlp.fc2.weight [D, M] / .bias blocks.{i}.ls2.gamma      norm.weight/bias [D]

Training checkpoints saved with `block_chunks > 0` name blocks `blocks.{chunk}.{i}.`; they are
read as `blocks.{i}.`. Linear weights [out, in] become Flax kernels [in, out]; the patch conv
[O, I, kh, kw] becomes [kh, kw, I, O]. A checkpoint trained at another resolution (e.g. 37 x 37
patches at 518 px) has the patch part of pos_embed resized bicubically to the ViT's grid.

File formats (no extra dependency): `.npz` (keys = official names) and `.safetensors` (read
and written here with numpy: an 8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets}}, then the raw little-endian bytes; F32, F16, BF16 and F64).
The number of heads is not stored in a checkpoint; it must match the one the file was trained
with (ViT-S 6, ViT-B 12, ViT-L 16, see `jaxwm.nn.vit.VIT_SIZES`).
"""
import json
import os
import re
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxwm.nn.vit import ViT, resize_pos_embed

IGNORED_KEYS = ("mask_token",)   # in every DINOv2 state_dict, unused for feature extraction
FORMATS = (".npz", ".safetensors")

# safetensors dtype name <-> numpy little-endian dtype (BF16 handled separately)
_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8"}
_ST_NAMES = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("float64"): "F64"}

# block sub-tensors: official suffix -> (Flax module, Flax param, kind)
_BLOCK_ENTRIES = (
    ("norm1.weight", "norm1", "scale", "same"),
    ("norm1.bias", "norm1", "bias", "same"),
    ("attn.qkv.weight", "attn_qkv", "kernel", "linear"),
    ("attn.qkv.bias", "attn_qkv", "bias", "same"),
    ("attn.proj.weight", "attn_proj", "kernel", "linear"),
    ("attn.proj.bias", "attn_proj", "bias", "same"),
    ("ls1.gamma", "ls1", "gamma", "same"),
    ("norm2.weight", "norm2", "scale", "same"),
    ("norm2.bias", "norm2", "bias", "same"),
    ("mlp.fc1.weight", "mlp_fc1", "kernel", "linear"),
    ("mlp.fc1.bias", "mlp_fc1", "bias", "same"),
    ("mlp.fc2.weight", "mlp_fc2", "kernel", "linear"),
    ("mlp.fc2.bias", "mlp_fc2", "bias", "same"),
    ("ls2.gamma", "ls2", "gamma", "same"),
)


class CheckpointError(ValueError):
    """A checkpoint file does not fit the ViT (missing/extra key, shape) or is malformed."""


# ------------------------------------------------------------------------------------------------
# Name mapping
# ------------------------------------------------------------------------------------------------
def dinov2_names(vit: ViT) -> list[tuple[str, tuple[str, ...], str]]:
    """(official name, Flax param path under 'params', kind) for every parameter of `vit`;
    kind is 'same', 'linear' (transpose) or 'conv' ([O, I, kh, kw] <-> [kh, kw, I, O])."""
    entries = [("cls_token", ("cls_token",), "same"), ("pos_embed", ("pos_embed",), "same")]
    if vit.num_registers:
        entries.append(("register_tokens", ("register_tokens",), "same"))
    entries += [("patch_embed.proj.weight", ("patch_embed", "kernel"), "conv"),
                ("patch_embed.proj.bias", ("patch_embed", "bias"), "same")]
    for i in range(vit.depth):
        for suffix, module, param, kind in _BLOCK_ENTRIES:
            if module.startswith("ls") and vit.layer_scale is None:
                continue
            entries.append((f"blocks.{i}.{suffix}", (f"blocks_{i}", module, param), kind))
    entries += [("norm.weight", ("norm", "scale"), "same"), ("norm.bias", ("norm", "bias"), "same")]
    return entries


def _to_official(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "linear":
        return x.T
    if kind == "conv":
        return x.transpose(3, 2, 0, 1)
    return x


def _from_official(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "linear":
        return x.T
    if kind == "conv":
        return x.transpose(2, 3, 1, 0)
    return x


def _official_shape(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    return tuple(_to_official(np.empty(shape, np.uint8), kind).shape)


def _unwrap(params) -> dict:
    return params["params"] if "params" in params else params


def _get(tree, path):
    for name in path:
        tree = tree[name]
    return tree


def _vit_summary(vit: ViT) -> str:
    return (f"ViT(image_size={vit.image_size}, patch_size={vit.patch_size}, dim={vit.dim}, "
            f"depth={vit.depth}, layer_scale={vit.layer_scale}, "
            f"num_registers={vit.num_registers})")


def to_dinov2_layout(params, vit: ViT) -> dict[str, np.ndarray]:
    """Flax params of `vit` ({'params': ...} or the inner dict) -> {official name: float32
    array in the PyTorch layout}; one entry per parameter leaf."""
    tree = _unwrap(params)
    out = {}
    for name, path, kind in dinov2_names(vit):
        try:
            leaf = _get(tree, path)
        except KeyError:
            raise CheckpointError(f"params have no {'/'.join(path)} (for {name!r}); are they "
                                  f"params of {_vit_summary(vit)}?") from None
        out[name] = np.ascontiguousarray(_to_official(np.asarray(leaf, np.float32), kind))
    return out


def from_dinov2_layout(tensors: dict[str, np.ndarray], vit: ViT, source: str = "checkpoint"
                       ) -> dict[str, Any]:
    """{official name: array} -> {'params': ...} of `vit` (float32), checked key by key.

    Raises CheckpointError naming the key: a missing key, an unexpected key (other than
    mask_token; e.g. a block beyond vit.depth or a LayerScale gamma when vit.layer_scale is
    None), a tensor whose shape differs from the expected one, or a patch size / width that
    does not match `vit`. pos_embed of another square grid is resized to the ViT's grid.
    """
    tensors = _unchunk(dict(tensors))
    where = f"{source} ({_vit_summary(vit)})"
    # the two mismatches users hit first get their own messages
    if "patch_embed.proj.weight" in tensors:
        shape = tuple(tensors["patch_embed.proj.weight"].shape)
        if len(shape) == 4 and shape[2:] != (vit.patch_size, vit.patch_size):
            raise CheckpointError(f"{where}: the checkpoint's patch size is {shape[2]}x{shape[3]} "
                                  f"('patch_embed.proj.weight' {shape}) but vit.patch_size="
                                  f"{vit.patch_size}")
    if "cls_token" in tensors:
        shape = tuple(tensors["cls_token"].shape)
        if shape and shape[-1] != vit.dim:
            raise CheckpointError(f"{where}: the checkpoint's width is {shape[-1]} ('cls_token' "
                                  f"{shape}) but vit.dim={vit.dim}")
    entries = dinov2_names(vit)
    expected = {name for name, _, _ in entries}
    missing = [name for name, _, _ in entries if name not in tensors]
    if missing:
        raise CheckpointError(f"{where}: missing key {missing[0]!r}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    extra = sorted(k for k in tensors if k not in expected and k not in IGNORED_KEYS)
    if extra:
        hint = ""
        blocks = {int(m.group(1)) for k in tensors if (m := re.match(r"blocks\.(\d+)\.", k))}
        if blocks and max(blocks) + 1 > vit.depth:
            hint = f"; the checkpoint has {max(blocks) + 1} blocks, vit.depth={vit.depth}"
        elif any(".ls1." in k or ".ls2." in k for k in extra):
            hint = "; the checkpoint has LayerScale (set vit.layer_scale, DINOv2 uses 1e-5)"
        elif "register_tokens" in extra:
            hint = (f"; the checkpoint has {tensors['register_tokens'].shape[1]} registers, "
                    f"vit.num_registers=0")
        raise CheckpointError(f"{where}: unexpected key {extra[0]!r}"
                              + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                              + hint)

    template = jax.eval_shape(vit.init, jax.random.PRNGKey(0),
                              jnp.zeros((1, vit.image_size, vit.image_size, 3)))["params"]
    params: dict = {}
    for name, path, kind in entries:
        want = _official_shape(tuple(_get(template, path).shape), kind)
        value = np.asarray(tensors[name], np.float32)
        if name == "pos_embed":
            value = _fit_pos_embed(value, want, vit, where)
        if tuple(value.shape) != want:
            raise CheckpointError(f"{where}: tensor {name!r} has shape {tuple(value.shape)} but "
                                  f"{want} was expected")
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = jnp.asarray(_from_official(value, kind))
    return {"params": params}


def _fit_pos_embed(value: np.ndarray, want: tuple[int, ...], vit: ViT, where: str) -> np.ndarray:
    """pos_embed [1, 1 + g*g, D] of any square grid g -> `want` = [1, 1 + G*G, D]."""
    if tuple(value.shape) == want:
        return value
    n = value.shape[1] - 1 if value.ndim == 3 else -1
    side = int(round(np.sqrt(max(n, 0))))
    if value.ndim != 3 or value.shape[0] != 1 or value.shape[2] != want[2] or side * side != n:
        raise CheckpointError(f"{where}: tensor 'pos_embed' has shape {tuple(value.shape)} but "
                              f"{want} (or [1, 1 + g*g, {want[2]}] for another grid g) was "
                              f"expected")
    return np.asarray(resize_pos_embed(jnp.asarray(value), (vit.grid_size, vit.grid_size)))


def _unchunk(tensors: dict) -> dict:
    """blocks.{chunk}.{i}.rest (block_chunks > 0 checkpoints) -> blocks.{i}.rest."""
    out = {}
    for key, value in tensors.items():
        m = re.match(r"blocks\.\d+\.(\d+)\.(.+)$", key)
        out[f"blocks.{m.group(1)}.{m.group(2)}" if m else key] = value
    return out


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
def _format(path: str) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"checkpoint path {str(path)!r}: extension {ext!r} is not one of "
                         f"{FORMATS}")
    return ext


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """{name: array} of a .safetensors file (F32/F16/F64 as stored, BF16 widened to float32)."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    if data.size < 8:
        raise CheckpointError(f"{path}: too short for a safetensors file ({data.size} bytes)")
    header_len = int(np.frombuffer(data[:8].tobytes(), "<u8")[0])
    if 8 + header_len > data.size:
        raise CheckpointError(f"{path}: header length {header_len} exceeds the file size "
                              f"{data.size}")
    try:
        header = json.loads(data[8:8 + header_len].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors header ({e})") from None
    body = data[8 + header_len:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        if dtype != "BF16" and dtype not in _ST_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype!r}; supported: "
                                  f"{sorted(_ST_DTYPES) + ['BF16']}")
        itemsize = 2 if dtype == "BF16" else np.dtype(_ST_DTYPES[dtype]).itemsize
        if not 0 <= start <= end <= body.size or end - start != itemsize * int(np.prod(shape)):
            raise CheckpointError(f"{path}: tensor {name!r} ({dtype} {shape}) has data offsets "
                                  f"[{start}, {end}] that do not fit its size or the file")
        raw = body[start:end].tobytes()
        if dtype == "BF16":   # bfloat16 is the upper half of a float32
            bits = np.frombuffer(raw, "<u2").astype("<u4") << 16
            out[name] = bits.view("<f4").reshape(shape)
        else:
            out[name] = np.frombuffer(raw, _ST_DTYPES[dtype]).reshape(shape)
    return out


def write_safetensors(path: str, tensors: dict[str, np.ndarray]) -> None:
    """Writes {name: float16/32/64 array} as .safetensors (keys sorted, header 8-byte aligned)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if arr.dtype not in _ST_NAMES:
            raise ValueError(f"write_safetensors: tensor {name!r} has dtype {arr.dtype}; "
                             f"supported: float16, float32, float64")
        blob = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _ST_NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(np.uint64(len(raw)).astype("<u8").tobytes())
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
    """{name: array} of a .npz or .safetensors file."""
    if _format(path) == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    return read_safetensors(path)


def load_dinov2(path: str, vit: ViT) -> dict[str, Any]:
    """Params {'params': ...} of `vit` from a DINOv2 checkpoint file (.npz or .safetensors)
    with the official parameter names; see `from_dinov2_layout` for the checks (errors are
    CheckpointError, a ValueError, naming the key and the expected and found shapes)."""
    return from_dinov2_layout(read_checkpoint(path), vit, source=str(path))


def save_dinov2_layout(path: str, params, vit: ViT) -> None:
    """Writes Flax params of `vit` in the official DINOv2 layout (float32), as .npz or
    .safetensors by the extension of `path`; written to a temporary file, then renamed."""
    ext = _format(path)
    tensors = to_dinov2_layout(params, vit)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=ext, dir=directory)
    os.close(fd)
    try:
        if ext == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **tensors)
        else:
            write_safetensors(tmp, tensors)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
