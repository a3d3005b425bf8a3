"""Streaming voice-activity detection and end-of-turn detection with Silero VAD.

The Silero VAD v6 ONNX model ships inside faster-whisper and runs on onnxruntime (no torch).
It scores 512-sample windows (32 ms at 16 kHz), each with the 64 samples before it as context,
and carries an LSTM state from window to window.

:class:`SileroVadModel` is the loaded model: load it once per process and share it; it holds
no per-stream state and ``onnxruntime`` sessions may be run from several threads.
:class:`StreamingVad` is one audio stream's detector (one per session, not thread-safe): feed it
float32 mono 16 kHz audio in frames of any size and it reports speech start and end using the
parameters of the OpenAI Realtime ``server_vad`` turn detection.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections import deque
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
WINDOW = 512
CONTEXT = 64
_STATE_SHAPE = (1, 1, 128)


def default_model_path() -> Path:
    from faster_whisper.utils import get_assets_path

    return Path(get_assets_path()) / "silero_vad_v6.onnx"


class SileroVadModel:
    """The Silero VAD network; :meth:`score` is pure given the state passed in."""

    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            os.fspath(path or default_model_path()), sess_options=options,
            providers=["CPUExecutionProvider"],
        )

    def score(
        self, windows: np.ndarray, state: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Speech probabilities of ``windows`` (shape ``[n, 576]``: 64 context + 512 samples).

        Windows are scored in order with the recurrent state carried through; returns the
        ``n`` probabilities and the state after the last window.
        """
        probs, h, c = self._session.run(
            None, {"input": windows, "h": state[0], "c": state[1]}
        )
        return np.asarray(probs, dtype=np.float32).reshape(-1), (h, c)


@dataclasses.dataclass(frozen=True)
class VadConfig:
    """Turn detection settings; names and defaults follow the Realtime API's ``server_vad``."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    max_utterance_s: float = 30.0
    # Speech ends only when the probability falls below threshold - hysteresis.
    hysteresis: float = 0.15
    # Audio kept after the last speech window: the VAD scores word endings (unvoiced
    # consonants, fading vowels) as silence, and Whisper misses them without it.
    tail_ms: int = 200
    # A silence this long is reported as a pause (``speech_paused``) while the turn may still
    # go on: the moment to start the final decode early and to ask whether the turn is over.
    # None: no pauses are reported. Only meaningful below ``silence_duration_ms``.
    pause_ms: int | None = None
    # An earlier first report of the same pause (reason "early"), shorter than ``pause_ms``:
    # soon enough to start the final decode, too soon to judge whether the turn is over.
    early_pause_ms: int | None = None
    # A second report of the same pause once the silence lasts this long (a turn judged
    # unfinished at the first one may be judged again with more of the silence heard).
    recheck_ms: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.prefix_padding_ms < 0 or self.silence_duration_ms < 0:
            raise ValueError("prefix_padding_ms and silence_duration_ms must be >= 0")
        if self.max_utterance_s <= 0:
            raise ValueError("max_utterance_s must be > 0")
        if self.tail_ms < 0 or (self.pause_ms is not None and self.pause_ms < 0):
            raise ValueError("tail_ms and pause_ms must be >= 0")
        if self.early_pause_ms is not None and (
                self.pause_ms is None or not 0 <= self.early_pause_ms < self.pause_ms):
            raise ValueError("early_pause_ms needs pause_ms and must be >= 0 and below it")


class VadEventType(enum.StrEnum):
    SPEECH_STARTED = "speech_started"
    SPEECH_PAUSED = "speech_paused"
    SPEECH_RESUMED = "speech_resumed"
    SPEECH_STOPPED = "speech_stopped"


@dataclasses.dataclass(frozen=True)
class VadEvent:
    """A change of state. Sample positions count from the start of the stream (16 kHz).

    ``speech_started``: ``start_sample`` is where the utterance begins, prefix padding included.
    ``speech_stopped``: ``end_sample`` is where the speech ended (before the trailing silence),
    ``audio`` is the whole utterance from ``start_sample`` to ``end_sample`` plus up to
    ``tail_ms`` of what followed, and ``reason`` is ``"silence"`` or ``"max_length"``.
    ``speech_paused``: the speech stopped ``pause_ms`` ago (``reason`` ``"pause"``);
    ``end_sample`` and ``audio`` are what ``speech_stopped`` would report if nothing more is
    said (the same audio, so a decode of it can be kept). With ``early_pause_ms`` the same
    pause is first reported that much sooner (``reason`` ``"early"``; its ``audio`` has the
    silence heard so far as its tail). ``speech_resumed``: speech came back after a pause
    (``end_sample`` is where it resumed); what the pause reported is void. A pause still going
    on at ``recheck_ms`` is reported again (``reason`` ``"recheck"``, same ``end_sample``).
    """

    type: VadEventType
    start_sample: int
    end_sample: int | None = None
    audio: np.ndarray | None = None
    reason: str | None = None


class StreamingVad:
    """One stream's speech detector. Not thread-safe: feed it from one thread at a time."""

    def __init__(self, model: SileroVadModel, config: VadConfig | None = None) -> None:
        self.model = model
        self.config = config or VadConfig()
        self.reset()

    def reset(self) -> None:
        """Forget all audio and state (e.g. after ``input_audio_buffer.clear``)."""
        self._state = (np.zeros(_STATE_SHAPE, np.float32), np.zeros(_STATE_SHAPE, np.float32))
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)  # samples not yet making a full window
        self._position = 0  # samples scored so far
        padding = self.config.prefix_padding_ms * SAMPLE_RATE // 1000
        self._padding: deque[np.ndarray] = deque(maxlen=max(1, -(-padding // WINDOW)))
        self._utterance: list[np.ndarray] = []
        self._start_sample = 0
        self._speech_end = 0  # end of the last window scored as speech
        self._early = False  # the current silence was reported as an early pause
        self._paused = False  # the current silence was reported as a pause
        self._rechecked = False  # ... and reported again at recheck_ms
        self._silence_limit: int | None = None  # set by end_after for the current silence
        self.in_speech = False
        self.last_probability = 0.0

    @property
    def position(self) -> int:
        """How many samples have been scored since the last reset."""
        return self._position

    @property
    def utterance_samples(self) -> int:
        """Length of the utterance in progress, without copying it (cheap per frame)."""
        return len(self._utterance) * WINDOW

    def current_utterance(self) -> np.ndarray:
        """The audio of the utterance in progress (empty when not in speech)."""
        if not self._utterance:
            return np.zeros(0, np.float32)
        return np.concatenate(self._utterance)

    def will_score(self, samples: int) -> bool:
        """Whether feeding ``samples`` more completes a window (runs the model); if not, feed
        only buffers them and is cheap enough for any thread."""
        return self._pending.size + samples >= WINDOW

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """Score ``samples`` (float32 mono 16 kHz, any length) and return the events they cause."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        buffered = np.concatenate([self._pending, samples]) if self._pending.size else samples
        count = buffered.size // WINDOW
        self._pending = buffered[count * WINDOW:].copy()
        if count == 0:
            return []
        frames = buffered[: count * WINDOW].reshape(count, WINDOW)
        contexts = np.empty((count, CONTEXT), np.float32)
        contexts[0] = self._context
        contexts[1:] = frames[:-1, -CONTEXT:]
        self._context = frames[-1, -CONTEXT:].copy()
        probabilities, self._state = self.model.score(
            np.concatenate([contexts, frames], axis=1), self._state)
        events: list[VadEvent] = []
        for frame, probability in zip(frames, probabilities, strict=True):
            event = self._step(frame, float(probability))
            if event is not None:
                events.append(event)
        return events

    def _step(self, frame: np.ndarray, probability: float) -> VadEvent | None:
        config = self.config
        self.last_probability = probability
        start = self._position
        self._position += WINDOW
        if not self.in_speech:
            if probability >= config.threshold:
                self.in_speech = True
                self._utterance = [*self._padding, frame]
                self._start_sample = start - WINDOW * len(self._padding)
                self._speech_end = self._position
                self._padding.clear()
                return VadEvent(VadEventType.SPEECH_STARTED, self._start_sample)
            self._padding.append(frame)
            return None
        self._utterance.append(frame)
        if probability >= config.threshold - config.hysteresis:
            self._speech_end = self._position
            self._silence_limit = None
            if self._paused or self._early:
                self._early = self._paused = self._rechecked = False
                return VadEvent(VadEventType.SPEECH_RESUMED, self._start_sample,
                                self._position - WINDOW)
        silence = self._position - self._speech_end
        length = self._position - self._start_sample
        limit = self._silence_limit
        if limit is None:
            limit = config.silence_duration_ms * SAMPLE_RATE // 1000
        if silence >= limit:
            return self._stop("silence")
        if length >= config.max_utterance_s * SAMPLE_RATE:
            self._speech_end = self._position
            return self._stop("max_length")
        if (config.early_pause_ms is not None and not self._early and not self._paused
                and silence >= config.early_pause_ms * SAMPLE_RATE // 1000):
            self._early = True
            return VadEvent(VadEventType.SPEECH_PAUSED, self._start_sample, self._speech_end,
                            self._audio_until_end(), "early")
        if (config.pause_ms is not None and not self._paused
                and silence >= config.pause_ms * SAMPLE_RATE // 1000):
            self._paused = True
            return VadEvent(VadEventType.SPEECH_PAUSED, self._start_sample, self._speech_end,
                            self._audio_until_end(), "pause")
        if (config.recheck_ms is not None and self._paused and not self._rechecked
                and silence >= config.recheck_ms * SAMPLE_RATE // 1000):
            self._rechecked = True
            return VadEvent(VadEventType.SPEECH_PAUSED, self._start_sample, self._speech_end,
                            self._audio_until_end(), "recheck")
        return None

    def end_after(self, silence_ms: int) -> None:
        """End the utterance in progress once its current silence lasts ``silence_ms`` (at the
        next window if it already does); speech before then restores the configured limit.
        For a turn judged complete during a pause: a shorter wait than for one judged not."""
        if self.in_speech:
            self._silence_limit = silence_ms * SAMPLE_RATE // 1000

    def _audio_until_end(self) -> np.ndarray:
        """The utterance up to the end of speech plus the tail heard so far."""
        tail = min(self.config.tail_ms * SAMPLE_RATE // 1000, self._position - self._speech_end)
        return np.concatenate(self._utterance)[: self._speech_end + tail - self._start_sample]

    def _stop(self, reason: str) -> VadEvent:
        event = VadEvent(VadEventType.SPEECH_STOPPED, self._start_sample, self._speech_end,
                         self._audio_until_end(), reason)
        self.in_speech = False
        self._early = self._paused = self._rechecked = False
        self._silence_limit = None
        self._utterance = []
        return event
