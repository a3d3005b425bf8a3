"""The tiny generated artifacts load in the real runtimes, so later unit tests can rely on them."""

from __future__ import annotations

import time
from pathlib import Path

import ctranslate2
import numpy as np
import tokenizers
from piper import PiperVoice

from llm.gguf import ChatFormat


def test_random_decoder_generates_tokens_from_a_chat_prompt(random_decoder_dir: Path) -> None:
    chat = ChatFormat.load(random_decoder_dir)
    tokenizer = tokenizers.Tokenizer.from_file(str(random_decoder_dir / "tokenizer.json"))
    generator = ctranslate2.Generator(str(random_decoder_dir), device="cpu")
    prompt = tokenizer.encode("<|im_start|>user\nGrüß dich<|im_end|>\n<|im_start|>assistant\n",
                              add_special_tokens=False)
    assert prompt.tokens[0] == "<|im_start|>"

    result = generator.generate_batch([prompt.tokens], max_length=12, sampling_topk=1,
                                      include_prompt_in_result=False,
                                      end_token=list(chat.stop_tokens))
    generated = result[0].sequences_ids[0]
    assert 0 < len(generated) <= 12
    assert all(0 <= token < tokenizer.get_vocab_size() for token in generated)


def test_random_decoder_is_cheap_to_build(tmp_path: Path) -> None:
    from tests.artifacts import build_random_decoder

    started = time.monotonic()
    folder = build_random_decoder(tmp_path / "decoder", seed=1)
    assert (folder / "model.bin").stat().st_size < 1_000_000
    assert time.monotonic() - started < 30  # generous: it takes well under a second


def test_tiny_piper_voice_speaks_one_chunk_per_sentence(tiny_voice_path: Path) -> None:
    voice = PiperVoice.load(tiny_voice_path)
    chunks = list(voice.synthesize("Hello there. How are you today?"))

    assert len(chunks) == 2
    for chunk in chunks:
        samples = chunk.audio_int16_array
        assert chunk.sample_rate == 16000
        assert samples.dtype == np.int16 and samples.size > 1000
        assert np.abs(samples).max() > 1000, "the voice makes sound, not silence"
