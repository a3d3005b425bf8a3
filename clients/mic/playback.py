"""The reply audio on the speaker: which response is playing, from where on the device, and
how much of it the user heard when it was stopped."""

from __future__ import annotations

import dataclasses

from clients.mic.devices import AudioDevice, Resampler
from voice.protocol import AudioDelta, OutputAudioDuck, OutputAudioUnduck


@dataclasses.dataclass
class _Reply:
    response_id: str
    start: int | None = None  # device position (played_samples) of its first sample
    samples: int = 0


@dataclasses.dataclass(frozen=True)
class Interruption:
    response_id: str
    played_ms: float  # how much of the reply the user heard
    played_samples: int  # the device's played_samples when playback stopped


class ReplyPlayback:
    """Plays reply audio deltas (PCM16 at the session's output rate) on ``audio``; a dropped
    (interrupted or cancelled) response's late audio is ignored."""

    def __init__(self, audio: AudioDevice, rate: int) -> None:
        self.audio = audio
        self._reply: _Reply | None = None
        self._dropped: set[str] = set()
        self._resampler = Resampler(rate, audio.output_rate)

    def new_connection(self) -> None:
        self._reply = None

    def drop(self, response_id: str) -> None:
        self._dropped.add(response_id)

    def dropped(self, response_id: str | None) -> bool:
        return response_id in self._dropped

    def play(self, event: AudioDelta, rate: int) -> None:
        if event.response_id in self._dropped:
            return
        reply = self._reply
        if reply is None or reply.response_id != event.response_id:
            reply = self._reply = _Reply(event.response_id)
            self._resampler = Resampler(rate, self.audio.output_rate)
            self.audio.duck(1.0)  # a new reply plays at full volume
            self.audio.hold(False)
        samples = self._resampler(event.samples())
        position = self.audio.play(samples)
        if reply.start is None:
            reply.start = position
        reply.samples += samples.size

    def follow(self, event: OutputAudioDuck | OutputAudioUnduck) -> None:
        """Paused (or quieter) while the server judges a sound over the reply; played on
        from where it paused by an unduck."""
        if self._reply is None or self._reply.response_id != event.response_id:
            return
        duck = event if isinstance(event, OutputAudioDuck) else None
        self.audio.hold(duck is not None and duck.hold)
        self.audio.duck(1.0 if duck is None or duck.hold else 10 ** (duck.gain_db / 20))

    def stop(self) -> Interruption | None:
        """Stop the reply now, dropping the rest of its audio; what the user heard of it,
        or None where no reply was playing (none started, or it had finished)."""
        reply = self._reply
        if reply is None or reply.start is None:
            return None
        self._reply = None
        self._dropped.add(reply.response_id)
        if self.audio.played_samples >= reply.start + reply.samples:
            return None
        played = self.audio.stop_playback()
        heard = min(max(played - reply.start, 0), reply.samples)
        return Interruption(reply.response_id, heard * 1000 / self.audio.output_rate, played)
