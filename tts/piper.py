"""Text to speech with Piper: one piece of text in, ``(int16 samples, sample_rate)`` chunks out.

A :class:`PiperSynthesizer` loads its voice once (ONNX model + ``.onnx.json``) and may be used
from several threads at once: onnxruntime sessions are thread-safe and piper-tts guards its
espeak-ng phonemizer with a lock. So one piece can be synthesized while the language model is
still writing the next. Each call blocks until the piece's audio exists; iterate the returned
chunks in a worker thread.

Memory: onnxruntime's arena keeps the largest buffers any synthesis needed, and with two pieces
synthesized at once it ratchets up to a few hundred MiB beyond the voice over a long run (the
creep in docs/benchmarks.md, "Soak"). Each run therefore asks onnxruntime to give the arena's
unused memory back when it ends ("memory.enable_memory_arena_shrinkage"): ~8 % slower per
piece than keeping it, much faster than no arena at all (``benchmarks/piper_memory.py``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)


class SpeechChunk(NamedTuple):
    """Mono PCM16 audio and its sample rate."""

    samples: np.ndarray  # int16
    sample_rate: int


class PiperSynthesizer:
    """A loaded Piper voice."""

    kind = "piper"

    def __init__(self, model_path: Path, *, threads: int = 1, use_cuda: bool = False,
                 length_scale: float | None = None, deterministic: bool = False) -> None:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        model_path = Path(model_path)
        config_path = model_path.with_name(model_path.name + ".json")
        if not model_path.is_file() or not config_path.is_file():
            raise FileNotFoundError(
                f"a Piper voice needs {model_path.name} and {config_path.name} in "
                f"{model_path.parent}")
        started = time.monotonic()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda
                     else ["CPUExecutionProvider"])
        config = json.loads(config_path.read_text(encoding="utf-8"))
        session = onnxruntime.InferenceSession(str(model_path), sess_options=options,
                                               providers=providers)
        run_options = onnxruntime.RunOptions()
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._voice = PiperVoice(config=PiperConfig.from_dict(config),
                                 session=_ShrinkingSession(session, run_options))
        self.name = model_path.name.removesuffix(".onnx")
        self.sample_rate = int(self._voice.config.sample_rate)
        self.language = language_of_piper_config(config)
        self._length_scale = length_scale
        # Piper adds random variation to each synthesis; tests that score its speech turn it
        # off, so the same text always gives the same audio.
        self._deterministic = deterministic
        logger.info("loaded Piper voice %s (%s, %d Hz) in %.2f s", self.name, self.language,
                    self.sample_rate, time.monotonic() - started)

    def synthesize(self, text: str) -> Iterator[SpeechChunk]:
        """Speak ``text``: one chunk per sentence piper-tts finds in it. Blocks per chunk."""
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=self._length_scale)
        if self._deterministic:
            config.noise_scale = config.noise_w_scale = 0.0
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield SpeechChunk(chunk.audio_int16_array, chunk.sample_rate)


class _ShrinkingSession:
    """An onnxruntime session whose every run uses ``run_options`` (piper-tts calls
    ``session.run(None, inputs)`` and has no way to pass them)."""

    def __init__(self, session: Any, run_options: Any) -> None:
        self._session = session
        self._run_options = run_options

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self._run_options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def language_of_piper_config(config: dict[str, object]) -> str:
    """The language family ("de") of a Piper voice config, from ``language.code`` or espeak."""
    language = config.get("language")
    if isinstance(language, dict) and isinstance(language.get("code"), str):
        return str(language["code"]).split("_")[0].lower()
    espeak = config.get("espeak")
    if isinstance(espeak, dict) and isinstance(espeak.get("voice"), str):
        return str(espeak["voice"]).split("-")[0].lower()
    return "und"
