"""A float32 numpy forward pass of a Llama / Qwen2 / Mistral3 GGUF file, as llama.cpp has it.

This is the yardstick for the GGUF -> CTranslate2 conversion: it reads the GGUF tensors as they
are stored (no converter code involved) and applies llama.cpp's conventions, in particular its
rotary embedding modes: ``llama`` rotates interleaved pairs ``(x[2i], x[2i+1])`` (the Q/K rows
were permuted for that when the GGUF was made), ``qwen2`` rotates the halves ``(x[i],
x[i + d/2])``; ``mistral3`` is ``llama`` with its own head size (``attention.key_length``) and
YaRN rotary scaling, written here from its definition: each dimension's angle blends the
original (extrapolated) and the ``factor``-times slower (interpolated) one, by a linear ramp
between the dimensions that turn ``beta_fast`` and ``beta_slow`` times over the original
context, and cos and sin are scaled by the attention factor. A converter that forgets or
botches the un-permutation, a bias, the tied output layer, the head size, the rotary scaling
or the norm epsilon produces logits far from these.

Also builds tiny GGUF files with random weights (:func:`write_tiny_gguf`) for both
architectures, so the comparison runs in a second without any downloaded model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.artifacts import CHATML_TEMPLATE, SPECIAL_TOKENS, byte_level_alphabet


def _rms_norm(x: np.ndarray, gamma: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * gamma


def _yarn_angles(positions: np.ndarray, head_dim: int, base: float, yarn: dict[str, float]
                 ) -> np.ndarray:
    """YaRN's rotary angles (T, head_dim / 2)."""
    pairs = np.arange(head_dim // 2, dtype=np.float64)
    extrapolated = positions[:, None] * base ** (-2 * pairs / head_dim)[None, :]
    interpolated = extrapolated / yarn["factor"]

    def turning(rotations: float) -> float:  # the dimension that turns this often
        return float(head_dim * np.log(yarn["original"] / (rotations * 2 * np.pi))
                     / (2 * np.log(base)))

    low = max(np.floor(turning(yarn["beta_fast"])), 0.0)
    high = min(np.ceil(turning(yarn["beta_slow"])), head_dim - 1.0)
    mix = np.clip((pairs - low) / max(high - low, 0.001), 0.0, 1.0)  # 1: interpolated
    return np.asarray(interpolated * mix + extrapolated * (1 - mix))


def _rotate(x: np.ndarray, positions: np.ndarray, base: float, interleaved: bool,
            yarn: dict[str, float] | None = None) -> np.ndarray:
    """Rotary embedding of ``x`` (T, heads, head_dim) at ``positions``."""
    head_dim = x.shape[-1]
    if yarn is None:
        inverse = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
        angles = positions[:, None].astype(np.float64) * inverse[None, :]  # (T, d/2)
        scale = 1.0
    else:
        angles = _yarn_angles(positions.astype(np.float64), head_dim, base, yarn)
        scale = yarn["attention"]
    cos = (np.cos(angles) * scale)[:, None, :].astype(np.float32)
    sin = (np.sin(angles) * scale)[:, None, :].astype(np.float32)
    if interleaved:
        first, second = x[..., 0::2], x[..., 1::2]
    else:
        first, second = x[..., : head_dim // 2], x[..., head_dim // 2:]
    rotated_first = first * cos - second * sin
    rotated_second = first * sin + second * cos
    out = np.empty_like(x)
    if interleaved:
        out[..., 0::2], out[..., 1::2] = rotated_first, rotated_second
    else:
        out[..., : head_dim // 2], out[..., head_dim // 2:] = rotated_first, rotated_second
    return out


class GGUFReference:
    """Reads a GGUF file once; :meth:`logits` runs the reference forward pass."""

    def __init__(self, path: Path) -> None:
        import gguf

        self._gguf = gguf
        self.reader = gguf.GGUFReader(path)
        self.tensors = {t.name: t for t in self.reader.tensors}
        self.arch = str(self._field("general.architecture"))
        if self.arch not in ("llama", "qwen2", "mistral3"):
            raise ValueError(f"the reference knows llama, qwen2 and mistral3, not {self.arch}")
        self.layers = int(self._arch("block_count"))
        self.heads = int(self._arch("attention.head_count"))
        self.heads_kv = int(self._arch("attention.head_count_kv") or self.heads)
        self.base = float(self._arch("rope.freq_base") or 10000.0)
        self.eps = float(self._arch("attention.layer_norm_rms_epsilon"))
        key_length = self._arch("attention.key_length")
        self.head_dim = None if key_length is None else int(str(key_length))
        self.yarn: dict[str, float] | None = None
        if self._arch("rope.scaling.type") == "yarn":
            def number(key: str) -> float:
                return float(str(self._arch(f"rope.scaling.{key}")))

            factor, multiplier = number("factor"), number("yarn_log_multiplier")
            self.yarn = {
                "factor": factor, "original": number("original_context_length"),
                "beta_fast": number("yarn_beta_fast"), "beta_slow": number("yarn_beta_slow"),
                # HF's get_mscale(factor, 1) / get_mscale(factor, mscale_all_dim)
                "attention": float((0.1 * np.log(factor) + 1)
                                   / (0.1 * multiplier * np.log(factor) + 1)),
            }

    def _field(self, key: str) -> object:
        field = self.reader.fields.get(key)
        return None if field is None else field.contents()

    def _arch(self, key: str) -> object:
        return self._field(f"{self.arch}.{key}")

    def weight(self, name: str) -> np.ndarray:
        tensor = self.tensors[name]
        return np.asarray(self._gguf.quants.dequantize(tensor.data, tensor.tensor_type),
                          dtype=np.float32)

    def logits(self, token_ids: list[int]) -> np.ndarray:
        """Float32 logits (len(token_ids), vocabulary) for a prompt, all positions."""
        ids = np.asarray(token_ids)
        x = self.weight("token_embd.weight")[ids]
        positions = np.arange(len(ids))
        causal = np.triu(np.full((len(ids), len(ids)), -np.inf, dtype=np.float32), k=1)
        interleaved = self.arch in ("llama", "mistral3")
        for index in range(self.layers):
            def w(name: str, index: int = index) -> np.ndarray:
                return self.weight(f"blk.{index}.{name}")

            def bias(name: str, index: int = index) -> np.ndarray | float:
                key = f"blk.{index}.{name}"
                return self.weight(key) if key in self.tensors else 0.0

            h = _rms_norm(x, w("attn_norm.weight"), self.eps)
            q = h @ w("attn_q.weight").T + bias("attn_q.bias")
            k = h @ w("attn_k.weight").T + bias("attn_k.bias")
            v = h @ w("attn_v.weight").T + bias("attn_v.bias")
            head_dim = self.head_dim or q.shape[-1] // self.heads
            q = _rotate(q.reshape(len(ids), self.heads, head_dim), positions, self.base,
                        interleaved, self.yarn)
            k = _rotate(k.reshape(len(ids), self.heads_kv, head_dim), positions, self.base,
                        interleaved, self.yarn)
            v = v.reshape(len(ids), self.heads_kv, head_dim)
            group = self.heads // self.heads_kv
            k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(head_dim) + causal
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            attended = np.einsum("hqk,khd->qhd", scores, v).reshape(len(ids), -1)
            x = x + attended @ w("attn_output.weight").T
            h = _rms_norm(x, w("ffn_norm.weight"), self.eps)
            gate = h @ w("ffn_gate.weight").T
            x = x + ((gate / (1 + np.exp(-gate))) * (h @ w("ffn_up.weight").T)) @ \
                w("ffn_down.weight").T
        x = _rms_norm(x, self.weight("output_norm.weight"), self.eps)
        output = "output.weight" if "output.weight" in self.tensors else "token_embd.weight"
        return np.asarray(x @ self.weight(output).T, dtype=np.float32)


def write_tiny_gguf(path: Path, arch: str, *, layers: int = 2, hidden: int = 64, heads: int = 4,
                    heads_kv: int = 2, seed: int = 0, tied: bool = False,
                    head_dim: int | None = None, yarn: bool = False,
                    vocabulary: tuple[list[str], list[float], list[int]] | None = None,
                    pre: str | None = None, template: str = CHATML_TEMPLATE) -> Path:
    """A GGUF file with random weights in ``arch``'s layout (Q8_0 matrices, f32 norms).

    Weights are stored as llama.cpp would store them; for ``llama`` and ``mistral3`` that
    means Q/K rows meant for interleaved rotary pairs, which the converter must un-permute.
    ``head_dim`` other than hidden / heads and ``yarn`` scaling are Ministral 3's traits.
    ``vocabulary`` (pieces, scores, token types) makes it a SentencePiece model (``llama``
    tokenizer, as Mistral 7B's); by default it has a byte-level BPE vocabulary.
    """
    import gguf

    rng = np.random.default_rng(seed)
    tokens = [*byte_level_alphabet(), "ab", *SPECIAL_TOKENS] if vocabulary is None \
        else vocabulary[0]
    vocab, ffn = len(tokens), hidden * 2
    head_dim = head_dim or hidden // heads

    def rand(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(layers)
    writer.add_context_length(4096)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads_kv)
    writer.add_rope_freq_base(1000000.0 if arch == "qwen2" else 10000.0)
    if head_dim != hidden // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if yarn:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(4.0)
        writer.add_rope_scaling_orig_ctx_len(64)
        writer.add_float32(f"{arch}.rope.scaling.yarn_beta_fast", 32.0)
        writer.add_float32(f"{arch}.rope.scaling.yarn_beta_slow", 1.0)
        writer.add_float32(f"{arch}.rope.scaling.yarn_log_multiplier", 0.5)
        writer.add_float32(f"{arch}.attention.temperature_scale", 0.1)
    writer.add_layer_norm_rms_eps(1e-5 if arch == "llama" else 1e-6)
    if vocabulary is None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre or ("qwen2" if arch == "qwen2" else "smollm"))
        writer.add_token_list(tokens)
        writer.add_token_types([1] * 257 + [3] * len(SPECIAL_TOKENS))
        writer.add_token_merges(["a b"])
        writer.add_bos_token_id(tokens.index("<|endoftext|>"))
        writer.add_eos_token_id(tokens.index("<|im_end|>"))
    else:
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(vocabulary[1])
        writer.add_token_types(vocabulary[2])
        writer.add_bos_token_id(tokens.index("<s>"))
        writer.add_eos_token_id(tokens.index("</s>"))
        writer.add_unk_token_id(tokens.index("<unk>"))
        writer.add_add_bos_token(True)
    writer.add_chat_template(template)

    def matrix(name: str, rows: int, cols: int) -> None:
        quantized = gguf.quants.quantize(rand(rows, cols), gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

    def vector(name: str, size: int, *, around_one: bool = False) -> None:
        writer.add_tensor(name, (1.0 + rand(size, scale=0.1)) if around_one else rand(size))

    matrix("token_embd.weight", vocab, hidden)
    vector("output_norm.weight", hidden, around_one=True)
    if not tied:
        matrix("output.weight", vocab, hidden)
    for index in range(layers):
        prefix = f"blk.{index}."
        vector(prefix + "attn_norm.weight", hidden, around_one=True)
        vector(prefix + "ffn_norm.weight", hidden, around_one=True)
        matrix(prefix + "attn_q.weight", heads * head_dim, hidden)
        matrix(prefix + "attn_k.weight", heads_kv * head_dim, hidden)
        matrix(prefix + "attn_v.weight", heads_kv * head_dim, hidden)
        if arch == "qwen2":
            vector(prefix + "attn_q.bias", heads * head_dim)
            vector(prefix + "attn_k.bias", heads_kv * head_dim)
            vector(prefix + "attn_v.bias", heads_kv * head_dim)
        matrix(prefix + "attn_output.weight", hidden, heads * head_dim)
        matrix(prefix + "ffn_gate.weight", ffn, hidden)
        matrix(prefix + "ffn_up.weight", ffn, hidden)
        matrix(prefix + "ffn_down.weight", hidden, ffn)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
