"""Speech to text with faster-whisper: one utterance in, one :class:`Transcript` out.

Input is float32 mono 16 kHz audio. The model is loaded once; :meth:`Transcriber.transcribe`
may be called from several worker threads at once (``num_workers`` replicas run in parallel).
All decoding happens inside the call: faster-whisper's lazy segment generator is consumed
there, so callers on an event loop only need to run the call itself in a thread.
:meth:`Transcriber.transcribe_batch` transcribes several utterances (of several sessions) in one
encoder call and one batched decoder call, which is how a GPU serves many sessions at once.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# Below this RMS level (about -66 dBFS) the audio is treated as silence without decoding.
_SILENCE_RMS = 5e-4
# faster-whisper's transcribe() defaults that _decode relies on, repeated for the batched path.
_MAX_INITIAL_TIMESTAMP_S = 1.0


@dataclasses.dataclass(frozen=True)
class TranscriberConfig:
    """Load-time settings of the ASR engine."""

    model_path: str
    device: str = "auto"  # "auto": CUDA when CTranslate2 sees a GPU, else CPU
    compute_type: str = "auto"  # "auto": float16 on CUDA, int8 on CPU
    cpu_threads: int = 0  # 0: CTranslate2's default
    num_workers: int = 1  # model replicas that can decode in parallel


@functools.cache
def whisper_languages() -> frozenset[str]:
    """The language codes Whisper recognises (faster-whisper's list: ISO 639-1 plus a few
    longer codes such as ``haw`` and ``yue``). Imports faster-whisper on the first call."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


@dataclasses.dataclass(frozen=True)
class TranscribeOptions:
    """Per-call settings. ``language`` pins the language; ``allowed_languages`` restricts
    detection to a set (the most probable language within the set wins)."""

    language: str | None = None
    allowed_languages: tuple[str, ...] | None = None
    beam_size: int = 1
    # Hallucination guards, applied per segment (Whisper's own rules plus a silence gate).
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    max_new_tokens: int | None = None


@dataclasses.dataclass(frozen=True)
class Transcript:
    """What was said. ``text`` is empty when nothing trustworthy was heard; ``rejected`` then
    says why (``"silence"``, ``"no_speech"``, ``"low_confidence"``, ``"repetitive"``)."""

    text: str
    language: str
    language_probability: float
    no_speech_probability: float
    avg_log_probability: float
    compression_ratio: float
    duration_s: float
    decode_s: float
    rejected: str | None = None


def resolve_device(device: str, compute_type: str) -> tuple[str, str]:
    """Turn ``auto`` settings into a concrete CTranslate2 device and compute type."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    return device, compute_type


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def _whisper_model_class() -> Any:
    """faster-whisper's WhisperModel with the encoder output of the last input memoized.

    faster-whisper's ``transcribe(language=None)`` encodes the first 30 s window once to detect
    the language and again (a window one frame shorter) to decode it; on a CPU the encoder is
    most of the cost of a short utterance. We detect the language ourselves on the decoder's
    own window, and this memo (per thread, keyed by the features' bytes) hands the decoder that
    same encoder output.
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
        self.config = config
        self.device, self.compute_type = resolve_device(config.device, config.compute_type)
        started = time.monotonic()
        self._model = _whisper_model_class()(
            config.model_path, device=self.device, compute_type=self.compute_type,
            cpu_threads=config.cpu_threads, num_workers=config.num_workers,
        )
        logger.info("loaded whisper model %s on %s (%s) in %.1f s", config.model_path,
                    self.device, self.compute_type, time.monotonic() - started)

    @property
    def is_multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions | None = None) -> Transcript:
        """Transcribe one utterance (float32 mono 16 kHz). Blocks; call it from a worker thread."""
        options = options or TranscribeOptions()
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        duration = audio.size / SAMPLE_RATE
        started = time.perf_counter()
        if _is_silence(audio):
            return _silence(options, duration)
        try:
            if options.language is not None:
                detected, probability = options.language, 1.0
            else:
                detected, probability = self._detect_language(audio, options.allowed_languages)
            segments = self._decode(audio, detected, options)
        finally:
            self._model.forget()
        return self._judge(segments, detected, probability, duration,
                           time.perf_counter() - started, options)

    def transcribe_batch(
        self, requests: Sequence[tuple[np.ndarray, TranscribeOptions | None]],
    ) -> list[Transcript]:
        """Transcribe several utterances together; result ``i`` answers ``requests[i]``.

        Utterances of up to 30 s whose options share ``beam_size`` and ``max_new_tokens`` are
        encoded in one CTranslate2 call, get their language detected each (pinned or within
        their ``allowed_languages``, as in :meth:`transcribe`) and are decoded in one batched
        ``generate`` call; other option sets form sub-batches. Each transcript gets the same
        guards and fields as :meth:`transcribe` would give it (with greedy decoding, the same
        text), except ``decode_s``, which is the time of the whole call. Silence is rejected
        without decoding; longer utterances are transcribed one after another. Blocks; call it
        from a worker thread. An error fails the whole call.
        """
        started = time.perf_counter()
        results: list[Transcript | None] = [None] * len(requests)
        groups: dict[tuple[int, int | None], list[_Pending]] = {}
        extractor = self._model.feature_extractor
        for index, (audio, options) in enumerate(requests):
            options = options or TranscribeOptions()
            audio = np.asarray(audio, dtype=np.float32).reshape(-1)
            if _is_silence(audio):
                results[index] = _silence(options, audio.size / SAMPLE_RATE)
                continue
            features = extractor(audio)
            if features.shape[-1] - 1 > extractor.nb_max_frames:  # more than one window
                results[index] = self.transcribe(audio, options)
                continue
            key = (options.beam_size, options.max_new_tokens)
            groups.setdefault(key, []).append(
                _Pending(index, options, audio.size / SAMPLE_RATE,
                         _first_window(features, extractor)))
        for group in groups.values():
            for pending, segments, language, probability in self._decode_batch(group):
                results[pending.index] = self._judge(segments, language, probability,
                                                     pending.duration_s, 0.0, pending.options)
        elapsed = time.perf_counter() - started
        transcripts = []
        for result in results:
            assert result is not None  # every request was answered above
            transcripts.append(dataclasses.replace(result, decode_s=elapsed))
        return transcripts

    def _decode_batch(self, group: list[_Pending]) -> list[tuple[_Pending, list[_Segment], str,
                                                                  float]]:
        """Encode, detect and generate one sub-batch (same beam size and token limit)."""
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        multilingual = bool(model.model.is_multilingual)
        # The plain (not memoizing) encoder: one call for the whole stack of 30 s windows.
        encoded = WhisperModel.encode(model, np.stack([p.window for p in group]))
        languages: list[tuple[str, float]] = [
            (p.options.language, 1.0) if p.options.language is not None else ("en", 1.0)
            for p in group]
        if multilingual and any(p.options.language is None for p in group):
            detected = model.model.detect_language(encoded)
            languages = [
                (p.options.language, 1.0) if p.options.language is not None
                else _pick_language(scores, p.options.allowed_languages)
                for p, scores in zip(group, detected, strict=True)]
        tokenizers = {language: Tokenizer(model.hf_tokenizer, multilingual, task="transcribe",
                                          language=language) for language, _ in languages}
        prompts = [model.get_prompt(tokenizers[language], [], without_timestamps=True)
                   for language, _ in languages]
        options = group[0].options
        max_length = model.max_length
        if options.max_new_tokens is not None:
            max_length = len(prompts[0]) + options.max_new_tokens
        generated = model.model.generate(
            encoded, prompts, beam_size=options.beam_size, patience=1.0, length_penalty=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, max_length=max_length,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(next(iter(tokenizers.values())), [-1]),
            max_initial_timestamp_index=round(_MAX_INITIAL_TIMESTAMP_S / model.time_precision),
        )
        decoded = []
        for pending, (language, probability), result in zip(group, languages, generated,
                                                             strict=True):
            tokens = result.sequences_ids[0]
            text = tokenizers[language].decode(tokens)
            # As faster-whisper: the mean log probability counts the end token; an empty
            # decode yields no segment at all.
            segments = [_Segment(text, result.scores[0] * len(tokens) / (len(tokens) + 1),
                                 compression_ratio(text.strip()), result.no_speech_prob)
                        ] if text.strip() else []
            decoded.append((pending, segments, language, probability))
        return decoded

    def _detect_language(self, audio: np.ndarray,
                         allowed: tuple[str, ...] | None) -> tuple[str, float]:
        """The most probable language (within ``allowed``) and its probability.

        Encodes exactly the window the decoder will encode next, so the memoized encoder
        output serves both: detection costs one decoder step, not a second encoder pass.
        """
        model = self._model
        if not model.model.is_multilingual:
            return "en", 1.0
        window = _first_window(model.feature_extractor(audio), model.feature_extractor)
        return _pick_language(model.model.detect_language(model.encode(window))[0], allowed)

    def _decode(self, audio: np.ndarray, language: str,
                options: TranscribeOptions) -> list[Any]:
        segments, _ = self._model.transcribe(
            audio, language=language, beam_size=options.beam_size, temperature=0.0,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
            no_speech_threshold=None, log_prob_threshold=None,
            compression_ratio_threshold=None, max_new_tokens=options.max_new_tokens,
        )
        return list(segments)  # decoding happens here, in the caller's thread

    @staticmethod
    def _judge(segments: Sequence[Any], language: str, probability: float, duration: float,
               decode_s: float, options: TranscribeOptions) -> Transcript:
        kept: list[str] = []
        reasons: list[str] = []
        for segment in segments:
            text = segment.text.strip()
            if not text:
                continue
            if (segment.no_speech_prob > options.no_speech_threshold
                    and segment.avg_logprob < options.log_prob_threshold):
                reasons.append("no_speech")
            elif segment.compression_ratio > options.compression_ratio_threshold:
                reasons.append("repetitive")
            elif segment.avg_logprob < options.log_prob_threshold - 0.5:
                reasons.append("low_confidence")
            else:
                kept.append(text)
        text = " ".join(kept).strip()
        no_speech = max((s.no_speech_prob for s in segments), default=1.0)
        log_prob = (float(np.mean([s.avg_logprob for s in segments])) if segments else 0.0)
        if reasons:
            logger.info("dropped %d whisper segment(s) as %s", len(reasons), ",".join(reasons))
        return Transcript(
            text=text,
            language=language,
            language_probability=probability,
            no_speech_probability=float(no_speech),
            avg_log_probability=log_prob,
            compression_ratio=compression_ratio(text) if text else 0.0,
            duration_s=duration,
            decode_s=decode_s,
            rejected=None if text else (reasons[0] if reasons else "no_speech"),
        )


class _Segment(NamedTuple):
    """The fields of a faster-whisper segment that :meth:`Transcriber._judge` reads."""

    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclasses.dataclass(frozen=True)
class _Pending:
    """One utterance of a batch, waiting for the encoder and decoder."""

    index: int
    options: TranscribeOptions
    duration_s: float
    window: np.ndarray  # log-mel features padded to the 30 s window, (n_mels, 3000)


def _is_silence(audio: np.ndarray) -> bool:
    return audio.size < SAMPLE_RATE // 10 or float(np.sqrt(np.mean(audio**2))) < _SILENCE_RMS


def _silence(options: TranscribeOptions, duration: float) -> Transcript:
    language = options.language or (options.allowed_languages or ("en",))[0]
    return Transcript("", language, 0.0, 1.0, 0.0, 0.0, duration, 0.0, rejected="silence")


def _first_window(features: np.ndarray, extractor: Any) -> np.ndarray:
    """The encoder input faster-whisper decodes first: the first 30 s (dropping the last
    frame, as it does), padded to a full window of ``extractor.nb_max_frames`` frames."""
    from faster_whisper.audio import pad_or_trim

    frames = extractor.nb_max_frames
    return np.asarray(pad_or_trim(features[:, : min(frames, features.shape[-1] - 1)], frames))


def _pick_language(scores: Sequence[tuple[str, float]],
                   allowed: tuple[str, ...] | None) -> tuple[str, float]:
    """The most probable language (within ``allowed``) from CTranslate2's detection scores
    (``("<|de|>", p)`` pairs), and its probability (renormalised within ``allowed``)."""
    probabilities = {token[2:-2]: float(p) for token, p in scores}
    if not allowed:
        language = max(probabilities, key=probabilities.__getitem__)
        return language, probabilities[language]
    language = max(allowed, key=lambda code: probabilities.get(code, 0.0))
    total = sum(probabilities.get(code, 0.0) for code in allowed) or 1.0
    return language, probabilities.get(language, 0.0) / total
