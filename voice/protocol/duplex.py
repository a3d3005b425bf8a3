"""Extension server events of full duplex: speech over a reply that did not cut it, and a
reply that resumed after a false interruption (docs/protocol.md, "Speech over a reply")."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from voice.protocol.server_events import ServerEvent


@dataclasses.dataclass(frozen=True)
class BackchannelHeard(ServerEvent):
    """The user acknowledged the reply ("mhm", "genau") without interrupting it: no turn
    started. ``item_id`` names the user item kept in the history (``backchannels: keep``),
    else it is null."""

    type: ClassVar[str] = "input_audio_buffer.backchannel"
    audio_start_ms: int
    audio_end_ms: int
    transcript: str
    language: str
    item_id: str | None = None


@dataclasses.dataclass(frozen=True)
class ResponseResumed(ServerEvent):
    """``response_id`` (a new response; its events follow as usual) speaks the rest of
    ``resumed_response_id``, from its word number ``word_index`` (0-based, words split at
    whitespace of its transcript), because what cut it off was nothing intelligible."""

    type: ClassVar[str] = "response.resumed"
    response_id: str
    resumed_response_id: str
    resumed_item_id: str
    word_index: int


@dataclasses.dataclass(frozen=True)
class OutputAudioDuck(ServerEvent):
    """Speech that began at ``audio_start_ms`` over the reply of ``response_id`` stands out
    from what the microphone heard while the reply played, and is being judged (the guard,
    ``session.interruption``): a client lowers the reply's volume by ``-gain_db`` dB until
    ``output_audio_buffer.unduck`` (it was not an interruption) or stops playback at
    ``input_audio_buffer.speech_started`` (it was). With ``hold`` (the session asked for it,
    ``session.interruption.hold``) the client pauses the reply instead, and ``unduck`` plays
    it on from where it paused."""

    type: ClassVar[str] = "output_audio_buffer.duck"
    response_id: str
    gain_db: float
    audio_start_ms: int
    hold: bool = False


@dataclasses.dataclass(frozen=True)
class OutputAudioUnduck(ServerEvent):
    """The speech that ducked the reply of ``response_id`` was no interruption (the reply's
    echo, a backchannel, a noise): a client plays the reply at its full volume again (a held
    reply: on from where it paused)."""

    type: ClassVar[str] = "output_audio_buffer.unduck"
    response_id: str
