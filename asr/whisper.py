"""Speech to text with faster-whisper: one utterance in, one :class:`Transcript` out.

Input is float32 mono 16 kHz audio. The model is loaded once; :meth:`Transcriber.transcribe`
may be called from several worker threads at once (``num_workers`` replicas run in parallel).
All decoding happens inside the call: faster-whisper's lazy segment generator is consumed
there, so callers on an event loop only need to run the call itself in a thread.
:meth:`Transcriber.transcribe_batch` transcribes several utterances (of several sessions) in one
encoder call and one batched decoder call, which is how a GPU serves many sessions at once;
:meth:`Transcriber.transcribe` is a batch of one. On a CPU the encoder sees a window fitted to
the utterance instead of Whisper's 30 s (``asr/window.py``), several times faster.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from asr.gpu_memory import retrying
from asr.transcript import (
    Segment,
    TranscribeOptions,
    Transcript,
    compression_ratio,
    judge,
    pick_language,
    runner_up,
    surer,
)
from asr.window import FULL_WINDOW_FRAMES, fitted_window_frames, read_timestamped, token_limit

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# Below this RMS level (about -66 dBFS) the audio is treated as silence without decoding.
_SILENCE_RMS = 5e-4
# faster-whisper's transcribe() default, repeated for the batched path.
_MAX_INITIAL_TIMESTAMP_S = 1.0


@dataclasses.dataclass(frozen=True)
class TranscriberConfig:
    """Load-time settings of the ASR engine."""

    model_path: str
    device: str = "auto"  # "auto": CUDA when CTranslate2 sees a GPU, else CPU
    compute_type: str = "auto"  # "auto": float16 on CUDA, int8 on CPU
    # 0: default_cpu_threads() on the CPU (one per decode on up to seven cores); CTranslate2's
    # default on CUDA.
    cpu_threads: int = 0
    num_workers: int = 1  # model replicas that can decode in parallel
    # The encoder's input for an utterance of up to 30 s: "fitted" to the utterance plus a
    # margin (asr/window.py; several times faster on a CPU), or Whisper's "full" 30 s window;
    # "auto": fitted on a CPU, full on CUDA, where the encoder is cheap and a shorter window
    # has not been checked.
    encoder_window: str = "auto"
    # A decode on CUDA that fails for lack of GPU memory is tried this many more times: a
    # momentary shortage passes, and after one CTranslate2's threads can fail once more with
    # a stale error (docs/benchmarks.md, "Out of GPU memory"). Not on the CPU.
    gpu_memory_retries: int = 2


@functools.cache
def whisper_languages() -> frozenset[str]:
    """The language codes Whisper recognises (faster-whisper's list: ISO 639-1 plus a few
    longer codes such as ``haw`` and ``yue``). Imports faster-whisper on the first call."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


def default_cpu_threads(cores: int) -> int:
    """Threads of one decode on the CPU when none are set: a quarter of the cores, at least
    one and at most CTranslate2's own default of four. On two cores one thread decodes
    whisper-base faster than two: 274 against 418 ms p50 for the decode at the pause on an
    Intel Xeon (MKL), as fast on an AMD EPYC; and the second core is left to the turn model and
    the language model working beside it (docs/benchmarks.md, "One thread a Whisper decode")."""
    return max(1, min(4, cores // 4))


def default_beam_size(device: str, *, mkl: bool) -> int:
    """A final transcript's beam when none is set: two on a CPU where CTranslate2 does its
    matrix products with Intel's MKL, one (greedy) elsewhere. With MKL a two-beam decode of
    whisper-base takes as long as a greedy one and the word error rate on the real recordings
    falls from 0.208 to 0.167, below faster-whisper's beam 5 (voice to voice -3 ms, clip by
    clip); with oneDNN (AMD) the service's voice to voice grew by ~150 ms (docs/benchmarks.md,
    "Beam 2 for the final transcript where it is free"). Not measured on a GPU: greedy."""
    return 2 if device == "cpu" and mkl else 1


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """Turn ``auto`` settings into a concrete CTranslate2 device and compute type."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def _whisper_model_class() -> Any:
    """faster-whisper's WhisperModel with the encoder output of the last input memoized.

    faster-whisper's ``transcribe(language=None)`` encodes the first 30 s window once to detect
    the language and again (a window one frame shorter) to decode it. For utterances longer
    than one window, which faster-whisper decodes, we detect the language ourselves on the
    decoder's own first window, and this memo (per thread, keyed by the features' bytes) hands
    the decoder that same encoder output.
    """
    from faster_whisper import WhisperModel

    class _MemoizingWhisperModel(WhisperModel):  # type: ignore[misc]
        _memo = threading.local()

        def encode(self, features: np.ndarray) -> Any:
            key = hash(np.ascontiguousarray(features).tobytes())
            memo = self._memo
            if getattr(memo, "key", None) == key:
                return memo.value
            value = super().encode(features)
            memo.key, memo.value = key, value
            return value

        def forget(self) -> None:
            self._memo.__dict__.clear()

    return _MemoizingWhisperModel


class Transcriber:
    """The ASR engine. Thread-safe; each call blocks until the transcript is complete."""

    def __init__(self, config: TranscriberConfig) -> None:
        if config.encoder_window not in ("auto", "fitted", "full"):
            raise ValueError(f"encoder_window must be auto, fitted or full, not "
                             f"{config.encoder_window!r}")
        self.config = config
        self.device, self.compute_type = resolve_device(config.device, config.compute_type)
        self.fitted_window = (config.encoder_window == "fitted"
                              or (config.encoder_window == "auto" and self.device == "cpu"))
        threads = config.cpu_threads
        if threads == 0 and self.device == "cpu":
            threads = default_cpu_threads(os.cpu_count() or 1)
        started = time.monotonic()
        self._model = _whisper_model_class()(
            config.model_path, device=self.device, compute_type=self.compute_type,
            cpu_threads=threads, num_workers=config.num_workers,
        )
        logger.info("loaded whisper model %s on %s (%s) in %.1f s, %s encoder window%s",
                    config.model_path, self.device, self.compute_type,
                    time.monotonic() - started, "fitted" if self.fitted_window else "30 s",
                    f", {threads} thread(s) a decode" if self.device == "cpu" else "")

    @property
    def is_multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions | None = None) -> Transcript:
        """Transcribe one utterance (float32 mono 16 kHz): :meth:`transcribe_batch` with a
        batch of one. Blocks; call it from a worker thread."""
        return self.transcribe_batch([(audio, options)])[0]

    def transcribe_batch(
        self, requests: Sequence[tuple[np.ndarray, TranscribeOptions | None]],
    ) -> list[Transcript]:
        """Transcribe several utterances together; result ``i`` answers ``requests[i]``.

        Utterances of up to 30 s whose options share ``beam_size`` and ``max_new_tokens`` are
        encoded in one CTranslate2 call, get their language detected each from that encoder
        output (pinned or within their ``allowed_languages``) and are decoded in one batched
        ``generate`` call; other option sets form sub-batches. With a fitted encoder window
        (``TranscriberConfig.encoder_window``) the sub-batch's window fits its longest
        utterance, and an utterance whose decode shows a sign of a too-short window (see
        ``asr/window.py``) is decoded again in the 30 s window, in the language detected
        first. Silence is rejected without decoding; utterances longer than 30 s are
        transcribed one after another by faster-whisper. Every transcript gets the same
        guards, and ``decode_s`` is the time of the whole call. Blocks; call it from a worker
        thread. An error fails the whole call.
        """
        started = time.perf_counter()
        results: list[Transcript | None] = [None] * len(requests)
        groups: dict[tuple[int, int | None, str | None], list[_Pending]] = {}
        extractor = self._model.feature_extractor
        for index, (audio, options) in enumerate(requests):
            options = options or TranscribeOptions()
            audio = np.asarray(audio, dtype=np.float32).reshape(-1)
            duration = audio.size / SAMPLE_RATE
            if _is_silence(audio):
                results[index] = _silence(options, duration)
                continue
            features = extractor(audio)[:, :-1]  # faster-whisper drops the last frame, too
            if features.shape[-1] > extractor.nb_max_frames:  # more than one window
                results[index] = self._transcribe_long(audio, options)
                continue
            language = None if options.language is None else (options.language, 1.0)
            key = (options.beam_size, options.max_new_tokens, options.prompt)
            groups.setdefault(key, []).append(
                _Pending(index, options, duration, features, language))
        for group in groups.values():
            seconds = []
            for done in self._decode_retrying(group):
                results[done.pending.index] = judge(
                    done.segments, done.language, done.probability, done.pending.duration_s,
                    0.0, done.pending.options)
                if done.second is not None:
                    seconds.append(dataclasses.replace(done.pending, language=done.second,
                                                       second=None))
            if seconds:  # close calls: decoded again in the runner-up language
                for done in self._decode_retrying(seconds):
                    first = results[done.pending.index]
                    assert first is not None
                    second = judge(done.segments, done.language, done.probability,
                                   done.pending.duration_s, 0.0, done.pending.options)
                    kept = surer(first, second, done.pending.options.second_language_margin)
                    logger.info("language a close call (%s %.2f: %.2f, %s %.2f: %.2f); kept %s",
                                first.language, first.language_probability,
                                first.avg_log_probability, second.language,
                                second.language_probability, second.avg_log_probability,
                                kept.language)
                    results[done.pending.index] = kept
        elapsed = time.perf_counter() - started
        transcripts = []
        for result in results:
            assert result is not None  # every request was answered above
            transcripts.append(dataclasses.replace(result, decode_s=elapsed))
        return transcripts

    def _decode_retrying(self, group: list[_Pending]) -> list[_Decoded]:
        """:meth:`_decode_group`, tried again where a GPU is short of memory."""
        retries = self.config.gpu_memory_retries if self.device == "cuda" else 0
        return retrying(functools.partial(self._decode_group, group, fitted=self.fitted_window),
                        retries, "decoding")

    def _decode_group(self, group: list[_Pending], *, fitted: bool) -> list[_Decoded]:
        """Encode, detect and generate one sub-batch (same beam size, token limit and prompt),
        in a window fitted to its longest utterance or in the 30 s window."""
        from faster_whisper import WhisperModel
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        multilingual = bool(model.model.is_multilingual)
        frames = FULL_WINDOW_FRAMES
        if fitted:
            frames = max(fitted_window_frames(p.features.shape[-1]) for p in group)
        # Timestamps keep a fitted window's decode from looping (asr/window.py); in the 30 s
        # window they would end the decode early at a segment that does not fit.
        timestamps = frames < FULL_WINDOW_FRAMES
        # The plain (not memoizing) encoder: one call for the whole stack of windows.
        encoded = WhisperModel.encode(
            model, np.stack([pad_or_trim(p.features, frames) for p in group]))
        languages = [p.language or ("en", 1.0) for p in group]
        seconds = [p.second for p in group]
        if multilingual and any(p.language is None for p in group):
            detected = model.model.detect_language(encoded)
            languages = [p.language or pick_language(scores, p.options)
                         for p, scores in zip(group, detected, strict=True)]
            seconds = [p.second if p.language is not None else runner_up(scores, p.options, chosen)
                       for p, scores, chosen in zip(group, detected, languages, strict=True)]
        tokenizers = {language: Tokenizer(model.hf_tokenizer, multilingual, task="transcribe",
                                          language=language) for language, _ in languages}
        options = group[0].options
        previous = (next(iter(tokenizers.values())).encode(" " + options.prompt.strip())
                    if options.prompt and options.prompt.strip() else [])
        prompts = [model.get_prompt(tokenizers[language], previous,
                                    without_timestamps=not timestamps)
                   for language, _ in languages]
        limits = [token_limit(p.duration_s) for p in group]
        if options.max_new_tokens is not None:
            limits = [min(limit, options.max_new_tokens) for limit in limits]
        generated = model.model.generate(
            encoded, prompts, beam_size=options.beam_size, patience=1.0, length_penalty=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0,
            max_length=min(model.max_length, len(prompts[0]) + max(limits)),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(next(iter(tokenizers.values())), [-1]),
            max_initial_timestamp_index=round(_MAX_INITIAL_TIMESTAMP_S / model.time_precision),
        )
        decoded, retry = [], []
        for pending, (language, probability), second, result, limit in zip(
                group, languages, seconds, generated, limits, strict=True):
            tokenizer = tokenizers[language]
            tokens = result.sequences_ids[0]
            kept, problem = (read_timestamped(tokens[:limit], tokenizer.timestamp_begin,
                                              pending.duration_s)
                             if timestamps else (tokens[:limit], None))
            text = tokenizer.decode(kept)
            ratio = compression_ratio(text.strip())
            if len(tokens) >= token_limit(pending.duration_s):
                problem = "runaway"
            elif ratio > pending.options.compression_ratio_threshold:
                problem = problem or "repetitive"
            if timestamps and problem and pending.options.retry_full_window:
                logger.info("decode in a %d-frame window looked wrong (%s); decoding again in "
                            "the 30 s window", frames, problem)
                retry.append(dataclasses.replace(pending, language=(language, probability),
                                                 second=second))
                continue
            if problem in ("runaway", "repetitive") and not pending.options.retry_full_window:
                text = ""  # a loop, not speech: nothing of it is trustworthy
            # As faster-whisper: the mean log probability counts the end token; an empty
            # decode yields no segment at all.
            segments = [Segment(text, result.scores[0] * len(tokens) / (len(tokens) + 1),
                                ratio, result.no_speech_prob)] if text.strip() else []
            decoded.append(_Decoded(pending, segments, language, probability, second))
        if retry:
            decoded.extend(self._decode_group(retry, fitted=False))
        return decoded

    def _transcribe_long(self, audio: np.ndarray, options: TranscribeOptions) -> Transcript:
        """An utterance longer than one window, in faster-whisper's consecutive 30 s windows.

        The language is detected on the first window, and the memoizing model hands that
        encoder output to faster-whisper's decode of the same window: one encoder pass.
        """
        started = time.perf_counter()
        model = self._model
        language, probability = options.language or "en", 1.0
        try:
            if options.language is None and model.model.is_multilingual:
                first = model.feature_extractor(audio)[:, :FULL_WINDOW_FRAMES]
                scores = model.model.detect_language(model.encode(first))[0]
                language, probability = pick_language(scores, options)
            segments, _ = model.transcribe(
                audio, language=language, beam_size=options.beam_size, temperature=0.0,
                condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
                no_speech_threshold=None, log_prob_threshold=None,
                compression_ratio_threshold=None, max_new_tokens=options.max_new_tokens,
                initial_prompt=options.prompt or None,
            )
            decoded = list(segments)  # decoding happens here, in the caller's thread
        finally:
            model.forget()
        return judge(decoded, language, probability, audio.size / SAMPLE_RATE,
                     time.perf_counter() - started, options)

@dataclasses.dataclass(frozen=True)
class _Pending:
    """One utterance of a batch, waiting for the encoder and decoder."""

    index: int
    options: TranscribeOptions
    duration_s: float
    features: np.ndarray  # log-mel features of the utterance, (n_mels, at most 3000 frames)
    language: tuple[str, float] | None  # pinned, or detected before a retry: not detected again
    second: tuple[str, float] | None = None  # a close call's runner-up, to decode in next


class _Decoded(NamedTuple):
    pending: _Pending
    segments: list[Segment]
    language: str
    probability: float
    second: tuple[str, float] | None  # a close call's runner-up language, not yet decoded


def _is_silence(audio: np.ndarray) -> bool:
    return audio.size < SAMPLE_RATE // 10 or float(np.sqrt(np.mean(audio**2))) < _SILENCE_RMS


def _silence(options: TranscribeOptions, duration: float) -> Transcript:
    language = options.language or (options.allowed_languages or ("en",))[0]
    return Transcript("", language, 0.0, 1.0, 0.0, 0.0, duration, 0.0, rejected="silence")
