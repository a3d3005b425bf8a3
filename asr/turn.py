"""Semantic end-of-turn detection with Smart Turn v3 (Daily/pipecat, BSD-2-Clause).

Silence alone cannot tell "I'd like to book a flight to..." (a pause to think) from "I'd like to
book a flight to Paris." (done). Smart Turn is a small Whisper-encoder classifier that listens to
the user's turn so far and returns the probability that the turn is complete: a second opinion
to ask when the VAD reports a pause. It is multilingual, but much sharper on fluent English than on
the read speech of our 8-language recordings (docs/models.md, "The end-of-turn model").

The input preparation follows what pipecat's own analyzer does for this model: the **last 8 s**
of 16 kHz audio (shorter audio is zero-padded **at the start**, so the end of speech stays at the
end of the window), normalised to zero mean and unit variance over the whole 8 s window, then
Whisper's 80-bin log-mel features (25 ms window, 10 ms hop: 800 frames), computed here with
faster-whisper's :class:`~faster_whisper.feature_extractor.FeatureExtractor`. The ONNX model takes
``input_features`` of shape ``[batch, 80, 800]`` and ends in a sigmoid: its one output per row
is already the probability (pipecat reads ``> 0.5`` as "complete").

:class:`SmartTurnModel` is loaded once per process and shared: it holds no per-call state, and
:meth:`SmartTurnModel.probability` may be called from several threads at once.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
WINDOW_S = 8
WINDOW = WINDOW_S * SAMPLE_RATE  # samples the model sees
N_MELS = 80
FRAMES = WINDOW // 160  # 10 ms hop: 800 frames
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
_NORMALISE_EPS = 1e-7  # as transformers' WhisperFeatureExtractor(do_normalize=True)


def model_file(path: Path) -> Path:
    """The ``.onnx`` to load: ``path`` itself, or the model inside a prepared model folder
    (``voice models prepare smart-turn-v3.2`` makes one)."""
    if path.is_dir():
        for candidate in (path / MODEL_FILE, *sorted(path.glob("*.onnx"))):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"no .onnx end-of-turn model in {path}")
    return path


def model_window(audio: np.ndarray) -> np.ndarray:
    """The 8 s the model sees: the last ``WINDOW`` samples, zero-padded at the start."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected mono audio (1-D), got shape {samples.shape}")
    if samples.size >= WINDOW:
        return samples[-WINDOW:]
    return np.concatenate([np.zeros(WINDOW - samples.size, np.float32), samples])


class SmartTurnModel:
    """The Smart Turn network on onnxruntime's CPU provider.

    ``threads`` is onnxruntime's intra-op thread count for one call. One thread is the default:
    on the 2-core development machine a call took 75 ms with one thread and 100 ms with two
    (docs/models.md, "The end-of-turn model"), and a second thread takes a core from the
    other engines.
    """

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.path = model_file(path)
        self._session = onnxruntime.InferenceSession(
            os.fspath(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape)[1:] != [N_MELS, FRAMES]:
            raise ValueError(f"{self.path} is not a Smart Turn v3 model: inputs "
                             f"{[(i.name, i.shape) for i in inputs]}")
        self._input = inputs[0].name
        # Stateless when called without chunk_length, so one instance serves every thread.
        self._features = FeatureExtractor(feature_size=N_MELS, sampling_rate=SAMPLE_RATE,
                                          chunk_length=WINDOW_S)

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features of :func:`model_window` of ``audio``: float32 ``[80, 800]``."""
        window = model_window(audio)
        normalised = (window - window.mean()) / np.sqrt(window.var() + _NORMALISE_EPS)
        log_mel = self._features(normalised.astype(np.float32), padding=0)
        return np.asarray(log_mel, dtype=np.float32)

    def probability(self, audio: np.ndarray) -> float:
        """Probability (0..1) that the user's turn is complete, given ``audio``: float32 mono
        16 kHz, the user's turn so far (only its last 8 s count). Takes tens of milliseconds
        of CPU, so call it from a worker thread; safe from several threads at once. Scores
        between about 0.1 and 0.9 are unstable (the int8 model jumps on tiny input changes):
        read them as "unsure"."""
        batch = self.features(audio)[np.newaxis]
        (scores,) = self._session.run(None, {self._input: batch})
        return float(np.asarray(scores).reshape(-1)[0])
