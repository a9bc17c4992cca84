"""llama.cpp's names and numbers for a Llama GGUF, as data: tensor names, the q/k permutation, quant types.

Facts taken from llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel`), `convert_lora_to_gguf.py` and
`gguf-py/gguf/constants.py`; the writers in `gguf.py` and `gguf_lora.py` only translate with them.
"""

from __future__ import annotations

import re
from hashlib import sha256
from typing import Literal

import numpy as np
from gguf import GGMLQuantizationType, LlamaFileType

from tunesmith.errors import TunesmithError

ARCH = "llama"  # general.architecture, and the prefix of the hyperparameter keys
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)  # config.json `architectures`; Llama-family only

# Hugging Face module name -> GGUF tensor name (without the `.weight` / `.bias` suffix), as in
# gguf-py's tensor_mapping.py for MODEL_ARCH.LLAMA. `{i}` is the block (layer) index.
TENSOR_NAMES: dict[str, str] = {
    "model.embed_tokens": "token_embd",
    "model.norm": "output_norm",
    "lm_head": "output",  # absent when the embeddings are tied (SmolLM2): llama.cpp reuses token_embd
    "model.layers.{i}.input_layernorm": "blk.{i}.attn_norm",
    "model.layers.{i}.self_attn.q_proj": "blk.{i}.attn_q",
    "model.layers.{i}.self_attn.k_proj": "blk.{i}.attn_k",
    "model.layers.{i}.self_attn.v_proj": "blk.{i}.attn_v",
    "model.layers.{i}.self_attn.o_proj": "blk.{i}.attn_output",
    "model.layers.{i}.post_attention_layernorm": "blk.{i}.ffn_norm",
    "model.layers.{i}.mlp.gate_proj": "blk.{i}.ffn_gate",
    "model.layers.{i}.mlp.up_proj": "blk.{i}.ffn_up",
    "model.layers.{i}.mlp.down_proj": "blk.{i}.ffn_down",
}
SUFFIXES = ("weight", "bias")

# llama.cpp's rope kernel pairs dimension j with j + head_dim/2 (NeoX style is not used for llama),
# while HF pairs the two halves of each head differently; the converter reorders q and k rows per
# head so both agree. The value names the config field that gives the number of heads.
PERMUTED: dict[str, str] = {
    "self_attn.q_proj": "num_attention_heads",
    "self_attn.k_proj": "num_key_value_heads",
}

_PATTERNS = [
    (
        re.compile(
            "^" + re.escape(hf).replace(r"\{i\}", r"(?P<i>\d+)") + r"\.(?P<suffix>weight|bias)$"
        ),
        gg,
    )
    for hf, gg in TENSOR_NAMES.items()
]

Quant = Literal["f16", "bf16", "q8_0", "q4_0"]
# quant -> (the type of 2-D weight matrices, general.file_type). 1-D tensors always stay F32.
QUANTS: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
}
FALLBACK = (
    GGMLQuantizationType.F16
)  # for rows that are not a whole number of quant blocks, as llama.cpp does
QUANTIZATION_VERSION = 2  # general.quantization_version for files with Q-types (ggml's current one)

# llama.cpp names a BPE pre-tokenizer by the sha256 of the token ids of this text (get_vocab_base_pre
# in convert_hf_to_gguf.py); llama.cpp's runtime picks its pre-tokenizer regexes by that name. The
# text must be byte-exact: the test checks that SmolLM2's tokenizer hashes to the entry below.
PRE_TOKENIZER_TEXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f "
    "(multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 "
    "33333333 3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2"
    "\u17b6\u1785\U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= "
    "\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure "
    "I'll make it, 'D you like some tea? We'Ve a'lL"
)
PRE_TOKENIZERS: dict[str, str] = {
    # ref: https://huggingface.co/HuggingFaceTB/SmolLM-135M (SmolLM2 shares the tokenizer)
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",
}


def pre_tokenizer_hash(token_ids: list[int]) -> str:
    """The hash llama.cpp's converter computes over the ids of PRE_TOKENIZER_TEXT."""
    return sha256(str(token_ids).encode()).hexdigest()


def gguf_tensor_name(hf_name: str) -> str:
    """`model.layers.3.self_attn.q_proj.weight` -> `blk.3.attn_q.weight`; unknown names are refused,
    so a tensor llama.cpp would not read never lands in the file silently."""
    for pattern, gguf_name in _PATTERNS:
        if match := pattern.match(hf_name):
            return gguf_name.format(i=match.groupdict().get("i")) + "." + match.group("suffix")
    raise TunesmithError(
        f"The tensor {hf_name!r} has no GGUF name for the llama architecture.",
        "Only plain Llama checkpoints (no extra heads, no vision tower) can be exported to GGUF.",
        code="gguf_unsupported_tensor",
    )


def head_count(hf_name: str, config: dict) -> int | None:
    """How many heads this tensor's rows are permuted by (q and k only), else None. A config without
    num_key_value_heads has as many KV heads as query heads."""
    field = next((f for module, f in PERMUTED.items() if f".{module}." in hf_name), None)
    return None if field is None else config.get(field, config["num_attention_heads"])


def permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute: within each head, interleave the two halves of the rows.

    rows: (n_head * head_dim, ...) -> same shape; viewed as (n_head, 2, head_dim/2, ...), axes 1 and 2
    swapped. Applies to weights (out, in), biases (out,) and LoRA B matrices (out, r) alike.
    """
    shape = rows.shape
    return (
        rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
    )
