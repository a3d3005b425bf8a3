"""GGUF -> CTranslate2 conversion for Llama- and Qwen2-architecture chat models.

CTranslate2 has no GGUF loader, and GGUF files are the only language models on the package
registries we can reach. :func:`convert_gguf` reads a GGUF file with the ``gguf`` package,
dequantizes every tensor to float32, builds a ``TransformerDecoderModelSpec`` the way
CTranslate2's own Transformers converter does for Llama and Qwen2 (pre-norm RMSNorm, rotary
embeddings, gated SiLU FFN, grouped-query attention, q/k/v biases for Qwen2), quantizes it and
saves it. Next to the CTranslate2 files it writes:

* ``tokenizer.json``: a byte-level BPE tokenizer for the ``tokenizers`` library, rebuilt from the
  GGUF vocabulary, merges and pre-tokenizer type;
* ``chat.json``: the chat template from the GGUF metadata, the special tokens and the context
  length (see :class:`ChatFormat`).

Memory: the float32 weights are held in memory until saved (about 4 bytes x parameters, plus the
quantized copy), e.g. ~4.3 GB for a 0.5B model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

logger = logging.getLogger(__name__)

CHAT_FORMAT_FILE = "chat.json"
TOKENIZER_FILE = "tokenizer.json"

# Pre-tokenizers of the byte-level BPE vocabularies we support, keyed by ``tokenizer.ggml.pre``.
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False}
_PRE_TOKENIZERS: dict[str, dict[str, Any]] = {
    "qwen2": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _QWEN2_SPLIT}, "behavior": "Isolated",
         "invert": False},
        {**_BYTE_LEVEL, "use_regex": False},
    ]},
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {**_BYTE_LEVEL, "use_regex": True},
    ]},
    "gpt2": {**_BYTE_LEVEL, "use_regex": True},
    "default": {**_BYTE_LEVEL, "use_regex": True},
}

# GGUF token types (gguf.TokenType): 3 = control, 4 = user defined.
_SPECIAL_TOKEN_TYPES = (3, 4)


class GGUFConversionError(Exception):
    """The GGUF file cannot be converted; the message says why."""


@dataclasses.dataclass(frozen=True)
class ChatFormat:
    """What the chat model needs besides weights: the prompt template and stop tokens."""

    chat_template: str
    bos_token: str | None
    eos_token: str
    stop_tokens: tuple[str, ...]
    context_length: int
    architecture: str
    add_bos_token: bool = False

    def save(self, folder: Path) -> None:
        data = dataclasses.asdict(self)
        data["stop_tokens"] = list(self.stop_tokens)
        (folder / CHAT_FORMAT_FILE).write_text(json.dumps(data, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path) -> ChatFormat:
        data = json.loads((folder / CHAT_FORMAT_FILE).read_text())
        data["stop_tokens"] = tuple(data["stop_tokens"])
        return cls(**data)


def build_byte_level_tokenizer_json(
    tokens: list[str], merges: list[str], special_ids: list[int], pre: str
) -> dict[str, Any]:
    """A ``tokenizers`` JSON document for a GPT-2-style byte-level BPE vocabulary.

    ``tokens`` are the byte-level-encoded strings (``"Ġthe"``), ``merges`` are ``"a b"`` pairs,
    ``special_ids`` are the ids of control tokens matched before pre-tokenization.
    """
    pre_tokenizer = _PRE_TOKENIZERS.get(pre)
    if pre_tokenizer is None:
        logger.warning("unknown pre-tokenizer %r, using GPT-2's regex", pre)
        pre_tokenizer = _PRE_TOKENIZERS["default"]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": tokens[i], "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for i in special_ids
        ],
        "normalizer": {"type": "NFC"} if pre == "qwen2" else None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": {token: i for i, token in enumerate(tokens)},
            "merges": [merge.split(" ", 1) for merge in merges],
        },
    }


class _GGUFModel:
    """Typed access to the metadata and tensors of a GGUF file (memory-mapped)."""

    def __init__(self, path: Path) -> None:
        import gguf

        try:
            self.reader = gguf.GGUFReader(path)
        except (ValueError, OSError) as error:
            raise GGUFConversionError(f"{path} is not a readable GGUF file: {error}") from error
        self.tensors = {t.name: t for t in self.reader.tensors}
        self.arch = str(self.field("general.architecture"))

    def field(self, key: str, default: Any = None) -> Any:
        field = self.reader.fields.get(key)
        if field is None:
            if default is None:
                raise GGUFConversionError(f"GGUF metadata lacks {key}")
            return default
        return field.contents()

    def arch_field(self, key: str, default: Any = None) -> Any:
        return self.field(f"{self.arch}.{key}", default)

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as float32 in PyTorch layout (out_features, in_features)."""
        import gguf

        tensor = self.tensors.get(name)
        if tensor is None:
            raise GGUFConversionError(f"GGUF file lacks tensor {name}")
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        return np.ascontiguousarray(array, dtype=np.float32)


def _unpermute_llama(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation (interleaved rotary -> Hugging Face's half split)."""
    head_dim = weight.shape[0] // num_heads
    return (
        weight.reshape(num_heads, head_dim // 2, 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def convert_gguf(
    gguf_path: Path, output_dir: Path, *, quantization: str = "int8", progress: bool = True
) -> ChatFormat:
    """Convert a Llama or Qwen2 GGUF file into a CTranslate2 model folder ``output_dir``.

    Writes ``model.bin``, ``config.json`` and the vocabulary (CTranslate2), ``tokenizer.json`` and
    ``chat.json``; returns the chat format. Runs synchronously (tens of seconds for 0.5B params).
    """
    import ctranslate2
    from ctranslate2.specs import common_spec, transformer_spec

    started = time.monotonic()
    model = _GGUFModel(gguf_path)
    if model.arch not in ("llama", "qwen2"):
        raise GGUFConversionError(
            f"{gguf_path.name}: architecture {model.arch!r} is not supported (llama, qwen2)"
        )
    num_layers = int(model.arch_field("block_count"))
    num_heads = int(model.arch_field("attention.head_count"))
    num_heads_kv = int(model.arch_field("attention.head_count_kv", num_heads))
    rope_base = float(model.arch_field("rope.freq_base", 10000.0))
    rms_eps = float(model.arch_field("attention.layer_norm_rms_epsilon"))
    context_length = int(model.arch_field("context_length"))

    tokens = [str(t) for t in model.field("tokenizer.ggml.tokens")]
    if model.field("tokenizer.ggml.model") != "gpt2":
        raise GGUFConversionError(
            f"{gguf_path.name}: tokenizer {model.field('tokenizer.ggml.model')!r} is not "
            "supported (only byte-level BPE, 'gpt2')"
        )

    spec = transformer_spec.TransformerDecoderModelSpec.from_config(
        num_layers,
        num_heads,
        activation=common_spec.Activation.SWISH,
        pre_norm=True,
        ffn_glu=True,
        rms_norm=True,
        rotary_dim=0,
        rotary_interleave=False,
        rotary_base=rope_base,
        num_heads_kv=None if num_heads_kv == num_heads else num_heads_kv,
    )
    decoder = spec.decoder
    decoder.scale_embeddings = False

    steps = 3 + num_layers
    with tqdm(total=steps, desc=f"converting {gguf_path.name}", unit="step",
              disable=not progress) as bar:
        embeddings = model.tensor("token_embd.weight")
        decoder.embeddings.weight = embeddings
        decoder.layer_norm.gamma = model.tensor("output_norm.weight")
        tied = "output.weight" not in model.tensors
        decoder.projection.weight = embeddings if tied else model.tensor("output.weight")
        bar.update(1)
        for index, layer in enumerate(decoder.layer):
            _set_layer(model, layer, index, num_heads, num_heads_kv)
            bar.update(1)

        spec.register_vocabulary(tokens)
        bos, eos, unk = _special_tokens(model, tokens)
        spec.config.bos_token = bos or eos
        spec.config.eos_token = eos
        spec.config.unk_token = unk or ""
        spec.config.layer_norm_epsilon = rms_eps
        spec.validate()
        spec.optimize(quantization=quantization)
        bar.update(1)
        output_dir.mkdir(parents=True, exist_ok=True)
        spec.save(str(output_dir))
        bar.update(1)

    token_types = list(model.field("tokenizer.ggml.token_type", []))
    special_ids = [i for i, kind in enumerate(token_types) if int(kind) in _SPECIAL_TOKEN_TYPES]
    tokenizer_json = build_byte_level_tokenizer_json(
        tokens,
        [str(m) for m in model.field("tokenizer.ggml.merges")],
        special_ids,
        str(model.field("tokenizer.ggml.pre", "default")),
    )
    (output_dir / TOKENIZER_FILE).write_text(json.dumps(tokenizer_json, ensure_ascii=False))

    chat_format = ChatFormat(
        chat_template=str(model.field("tokenizer.chat_template")),
        bos_token=bos,
        eos_token=eos,
        stop_tokens=_stop_tokens(tokens, eos),
        context_length=context_length,
        architecture=model.arch,
        add_bos_token=bool(model.field("tokenizer.ggml.add_bos_token", False)),
    )
    chat_format.save(output_dir)
    logger.info("converted %s (%s, %d layers) to %s in %.1f s (ctranslate2 %s)",
                gguf_path.name, model.arch, num_layers, output_dir,
                time.monotonic() - started, ctranslate2.__version__)
    return chat_format


def _set_layer(model: _GGUFModel, layer: Any, index: int, num_heads: int,
               num_heads_kv: int) -> None:
    prefix = f"blk.{index}."
    weight: Callable[[str], np.ndarray] = lambda name: model.tensor(prefix + name)  # noqa: E731
    attention = layer.self_attention
    attention.layer_norm.gamma = weight("attn_norm.weight")
    layer.ffn.layer_norm.gamma = weight("ffn_norm.weight")
    q, k, v = weight("attn_q.weight"), weight("attn_k.weight"), weight("attn_v.weight")
    if model.arch == "llama":
        q = _unpermute_llama(q, num_heads)
        k = _unpermute_llama(k, num_heads_kv)
    attention.linear[0].weight = np.concatenate([q, k, v])
    if prefix + "attn_q.bias" in model.tensors:
        attention.linear[0].bias = np.concatenate(
            [weight("attn_q.bias"), weight("attn_k.bias"), weight("attn_v.bias")]
        )
    attention.linear[1].weight = weight("attn_output.weight")
    layer.ffn.linear_0.weight = weight("ffn_gate.weight")
    layer.ffn.linear_0_noact.weight = weight("ffn_up.weight")
    layer.ffn.linear_1.weight = weight("ffn_down.weight")


def _special_tokens(model: _GGUFModel, tokens: list[str]) -> tuple[str | None, str, str | None]:
    """(bos, eos, unk) token strings; only eos is required."""

    def token(key: str) -> str | None:
        field = model.reader.fields.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[int(field.contents())] if field is not None else None

    eos = token("eos")
    if eos is None:
        raise GGUFConversionError("GGUF metadata lacks tokenizer.ggml.eos_token_id")
    return token("bos"), eos, token("unknown")


def _stop_tokens(tokens: list[str], eos: str) -> tuple[str, ...]:
    """End-of-turn tokens: the EOS token plus the ChatML / end-of-text markers if present."""
    candidates = [eos, "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"]
    vocabulary = set(tokens)
    return tuple(dict.fromkeys(t for t in candidates if t in vocabulary))
