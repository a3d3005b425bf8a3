"""GGUF -> CTranslate2 conversion for Llama-, Qwen2- and Mistral3-architecture chat models.

CTranslate2 has no GGUF loader, and GGUF files are the only language models on the package
registries we can reach. :func:`convert_gguf` reads a GGUF file with the ``gguf`` package,
dequantizes every tensor to float32, builds a ``TransformerDecoderModelSpec`` the way
CTranslate2's own Transformers converter does for Llama and Qwen2 (pre-norm RMSNorm, rotary
embeddings, gated SiLU FFN, grouped-query attention, q/k/v biases for Qwen2), quantizes it and
saves it. ``mistral3`` (Ministral 3) is a Llama with a head size of its own and YaRN rotary
scaling, which CTranslate2 has no name for: YaRN's per-frequency factors are given as
CTranslate2's "Su" factors (the same formula: each inverse frequency divided by its factor)
and its attention factor as the queries' scale. Its query temperature (``attention.
temperature_scale``) is exactly 1 below ``rope.scaling.original_context_length``, so the
context is capped there. Next to the CTranslate2 files it writes:

* ``tokenizer.json``: the tokenizer for the ``tokenizers`` library, rebuilt from the GGUF
  vocabulary (``llm/gguf_tokenizers.py``: byte-level BPE or SentencePiece);
* ``chat.json``: the chat template from the GGUF metadata, the special tokens and the context
  length (see :class:`ChatFormat`).

Memory: the float32 weights are held in memory until saved (about 4 bytes x parameters, plus the
quantized copy), e.g. ~4.3 GB for a 0.5B model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from llm.gguf_tokenizers import (
    SPECIAL_TOKEN_TYPES,
    build_byte_level_tokenizer_json,
    build_sentencepiece_tokenizer_json,
)

logger = logging.getLogger(__name__)

CHAT_FORMAT_FILE = "chat.json"
TOKENIZER_FILE = "tokenizer.json"

ARCHITECTURES = ("llama", "qwen2", "mistral3")


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
    if model.arch not in ARCHITECTURES:
        raise GGUFConversionError(
            f"{gguf_path.name}: architecture {model.arch!r} is not supported "
            f"({', '.join(ARCHITECTURES)})"
        )
    num_layers = int(model.arch_field("block_count"))
    num_heads = int(model.arch_field("attention.head_count"))
    num_heads_kv = int(model.arch_field("attention.head_count_kv", num_heads))
    hidden = int(model.arch_field("embedding_length"))
    head_dim = int(model.arch_field("attention.key_length", hidden // num_heads))
    rope_base = float(model.arch_field("rope.freq_base", 10000.0))
    rms_eps = float(model.arch_field("attention.layer_norm_rms_epsilon"))
    context_length = int(model.arch_field("context_length"))
    if int(model.arch_field("attention.sliding_window", 0)):
        # CTranslate2 applies a window only while generating, not to a prompt's prefill.
        raise GGUFConversionError(
            f"{gguf_path.name}: sliding-window attention is not supported (none of the "
            "catalog's models uses it)")
    rope = _rope_scaling(model, head_dim, rope_base)
    if rope.capped_context is not None:
        context_length = min(context_length, rope.capped_context)

    tokens = [str(t) for t in model.field("tokenizer.ggml.tokens")]
    tokenizer_kind = str(model.field("tokenizer.ggml.model"))
    if tokenizer_kind not in ("gpt2", "llama"):
        raise GGUFConversionError(
            f"{gguf_path.name}: tokenizer {tokenizer_kind!r} is not supported (byte-level BPE "
            "'gpt2' or SentencePiece 'llama')"
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
        rotary_scaling_type=rope.kind,
        original_max_position_embeddings=rope.original_context,
        num_heads_kv=None if num_heads_kv == num_heads else num_heads_kv,
        head_dim=None if head_dim == hidden // num_heads else head_dim,
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
            rope.apply(layer.self_attention, head_dim)
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

    token_types = [int(kind) for kind in model.field("tokenizer.ggml.token_type", [])]
    if tokenizer_kind == "llama":
        unknown = model.reader.fields.get("tokenizer.ggml.unknown_token_id")
        tokenizer_json = build_sentencepiece_tokenizer_json(
            tokens, [float(x) for x in model.field("tokenizer.ggml.scores")], token_types,
            unknown_id=int(unknown.contents()) if unknown is not None else None,
            add_space_prefix=bool(model.field("tokenizer.ggml.add_space_prefix", True)))
    else:
        tokenizer_json = build_byte_level_tokenizer_json(
            tokens,
            [str(m) for m in model.field("tokenizer.ggml.merges")],
            [i for i, kind in enumerate(token_types) if kind in SPECIAL_TOKEN_TYPES],
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
    if model.arch in ("llama", "mistral3"):
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


@dataclasses.dataclass(frozen=True)
class _Rope:
    """Rotary scaling as CTranslate2 takes it: a kind, per-frequency factors (Su) or one factor
    (Linear), the queries' scale, and the context beyond which the model is not converted
    faithfully (None: no limit)."""

    kind: Any = None  # ctranslate2.specs.attention_spec.RotaryScalingType
    factors: np.ndarray | None = None
    factor: float = 1.0
    queries_scale: float | None = None
    original_context: int = 0
    capped_context: int | None = None

    def apply(self, attention: Any, head_dim: int) -> None:
        from ctranslate2.specs.attention_spec import RotaryScalingType

        if self.kind is RotaryScalingType.Su:
            assert self.factors is not None
            attention.rotary_scaling_long_factor = self.factors
            attention.rotary_scaling_short_factor = self.factors
        elif self.kind is RotaryScalingType.Linear:
            attention.rotary_scaling_factor = np.float32(self.factor)
        if self.queries_scale is not None:
            attention.queries_scale = np.float32(self.queries_scale / math.sqrt(head_dim))


def yarn_factors(head_dim: int, base: float, factor: float, original_context: int,
                 beta_fast: float = 32.0, beta_slow: float = 1.0) -> np.ndarray:
    """YaRN's division of each rotary inverse frequency (head_dim / 2 of them): 1 for the
    fastest-turning dimensions, ``factor`` for the slowest, a linear ramp between."""

    def dimension(rotations: float) -> float:
        return (head_dim * math.log(original_context / (rotations * 2 * math.pi))
                / (2 * math.log(base)))

    low = max(math.floor(dimension(beta_fast)), 0)
    high: float = min(math.ceil(dimension(beta_slow)), head_dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(head_dim // 2) - low) / (high - low), 0.0, 1.0)
    keep = 1.0 - ramp  # the share of the original frequency
    return (1.0 / (keep + (1.0 - keep) / factor)).astype(np.float32)


def _mscale(factor: float, multiplier: float) -> float:
    return 1.0 if factor <= 1 else 0.1 * multiplier * math.log(factor) + 1.0


def _rope_scaling(model: _GGUFModel, head_dim: int, base: float) -> _Rope:
    from ctranslate2.specs.attention_spec import RotaryScalingType

    kind = str(model.arch_field("rope.scaling.type", "none"))
    factor = float(model.arch_field("rope.scaling.factor", 1.0))
    if kind == "none" or factor == 1.0:
        return _Rope()
    if kind == "linear":
        return _Rope(RotaryScalingType.Linear, factor=factor)
    if kind != "yarn":
        raise GGUFConversionError(f"rope scaling {kind!r} is not supported (linear, yarn)")
    original = int(model.arch_field("rope.scaling.original_context_length"))
    factors = yarn_factors(head_dim, base, factor, original,
                           float(model.arch_field("rope.scaling.yarn_beta_fast", 32.0)),
                           float(model.arch_field("rope.scaling.yarn_beta_slow", 1.0)))
    # The attention factor multiplies cos and sin, so q.k by its square (llama.cpp, HF).
    multiplier = model.reader.fields.get(f"{model.arch}.rope.scaling.yarn_log_multiplier")
    attention = (_mscale(factor, 1.0) / _mscale(factor, float(multiplier.contents()))
                 if multiplier is not None else _mscale(factor, 1.0))
    temperature = model.reader.fields.get(f"{model.arch}.attention.temperature_scale")
    return _Rope(RotaryScalingType.Su, factors=factors,
                 queries_scale=attention ** 2 if attention != 1.0 else None,
                 original_context=original,
                 capped_context=original if temperature is not None else None)

