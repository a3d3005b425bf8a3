"""Playing turns to a running service like a live microphone, and accounting for each.

A session keeps one connection; every server event goes to its :class:`SessionLedger`, which
decides when a turn is over and how it ended (``clients.latency.accounting``). Also used by the
soak benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
from websockets.exceptions import ConnectionClosed

from clients.client import VoiceClient, VoiceClientError, stream_file_realtime
from clients.latency.accounting import SessionLedger, Turn
from clients.latency.speech import RATE, Utterance
from voice.protocol import AudioDelta

# A user's pause between hearing a reply out and speaking again; longer than the server's
# allowance for a room's echo after the reply's last audio (voice.turns.ECHO_TAIL, 0.3 s).
PAUSE_S = 0.5


async def hold_line(client: VoiceClient, seconds: float, until: Callable[[], bool],
                    frame_ms: int = 20) -> bool:
    """Send silence at real-time pace (a live microphone never stops) until ``until()`` or
    ``seconds`` have passed; True if ``until()`` came true."""
    silence = np.zeros(RATE * frame_ms // 1000, np.int16)
    started = time.monotonic()
    frames = 0
    while not until():
        if time.monotonic() - started >= seconds:
            return False
        await client.send_audio(silence, RATE)
        frames += 1
        await asyncio.sleep(max(0.0, started + frames * frame_ms / 1000 - time.monotonic()))
    return True


async def play_turn(client: VoiceClient, ledger: SessionLedger, receiver: asyncio.Future[None],
                    clip: Utterance, *, timeout_s: float, frame_ms: int = 20,
                    trailing_silence_s: float = 1.0) -> Turn:
    """Speak ``clip`` at real-time pace, then silence, until the ledger says the turn is
    settled, ``timeout_s`` after the clip and its trailing silence, or until ``receiver`` (the
    task feeding the ledger) ends because the connection closed. Returns the finished turn.
    Raises ``ConnectionClosed`` if the connection closes while sending; the turn is then
    still open (finish it with ``closed=``)."""
    ledger.begin(clip.name, time.monotonic())
    speech_end = await stream_file_realtime(client, clip.samples, RATE, frame_ms=frame_ms,
                                            trailing_silence_s=trailing_silence_s,
                                            speech_end_sample=clip.speech_end)
    ledger.speech_sent(speech_end)
    settled = await hold_line(client, timeout_s,
                              lambda: ledger.settled(time.monotonic()) or receiver.done(),
                              frame_ms)
    if receiver.done() and not ledger.settled():
        return ledger.finish(closed=f"connection closed ({client.close_code} "
                                    f"{client.close_reason})")
    return ledger.finish(timed_out_s=None if settled else timeout_s)


async def run_session(url: str, key: str | None, session: int, utterances: Sequence[Utterance],
                      turns: int, timeout_s: float, keep_audio: bool,
                      deadline: float, *, pause_s: float | None = PAUSE_S) -> list[Turn]:
    """``turns`` turns on one connection (fewer once ``deadline`` passes or the connection
    closes). With ``keep_audio``, each completed turn keeps its reply's audio.

    Like a person, the session hears each reply out and speaks its next clip ``pause_s``
    after the reply's audio has played (sending silence meanwhile); with ``pause_s`` None it
    speaks as soon as the reply is written, over the rest of its playback: the server then
    takes every clip for speech over its reply (its echo guard judges it, the reply is
    truncated where the clip began)."""
    ledger = SessionLedger(session)
    try:
        client = await VoiceClient.connect(url, api_key=key)
    except VoiceClientError as error:
        ledger.record_failure("-", time.monotonic(), str(error))
        return ledger.turns
    audio: dict[str, list[np.ndarray]] = defaultdict(list)  # response id -> chunks

    async def receive() -> None:
        async for event in client.events():
            ledger.observe(event, time.monotonic())
            if keep_audio and isinstance(event, AudioDelta):
                audio[event.response_id].append(event.samples())

    async with client:
        receiver = asyncio.ensure_future(receive())
        try:
            for index in range(turns):
                if time.monotonic() > deadline or receiver.done():
                    break
                utterance = utterances[(session + index) % len(utterances)]
                turn = await play_turn(client, ledger, receiver, utterance,
                                       timeout_s=timeout_s)
                completed = [audio[rid] for rid, status in turn.responses.items()
                             if status == "completed" and audio.get(rid)]
                if completed:
                    turn.reply_audio = np.concatenate(completed[0])
                audio.clear()
                played = turn.played_until()
                if pause_s is not None and played is not None and index + 1 < turns:
                    await hold_line(client, max(0.0, played - time.monotonic()) + pause_s,
                                    receiver.done)
        except ConnectionClosed as error:
            if ledger.current is not None:
                ledger.finish(closed=f"connection closed while sending ({error})")
        finally:
            if ledger.current is not None:
                ledger.finish(closed="the run was stopped")
            receiver.cancel()
    return ledger.turns


async def run_level(url: str, key: str | None, sessions: int, turns: int,
                    utterances: Sequence[Utterance], timeout_s: float, keep_audio: bool,
                    deadline: float, *, pause_s: float | None = PAUSE_S,
                    ) -> tuple[list[Turn], float]:
    """``sessions`` concurrent sessions (see ``run_session``); their turns and the seconds
    they took."""
    started = time.monotonic()
    groups = await asyncio.gather(*(
        run_session(url, key, s, utterances, turns, timeout_s, keep_audio, deadline,
                    pause_s=pause_s)
        for s in range(sessions)))
    return [t for group in groups for t in group], time.monotonic() - started
