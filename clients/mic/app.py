"""The voice-mic session: microphone -> server -> speaker, with barge-in, push-to-talk,
mute-while-speaking and reconnection."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np

from clients.client import VoiceClient, VoiceClientError, response_id_of
from clients.mic.console import (
    Console,
    describe_close,
    explain,
    format_latency,
    read_stdin_lines,
    refused_for_good,
)
from clients.mic.devices import AudioDevice, DeviceError, Resampler
from clients.mic.options import Options
from clients.mic.playback import Interruption, ReplyPlayback
from clients.mic.tools import LocalTools, mcp_note, mcp_servers, ring_tone
from voice.protocol import (
    AUDIO_RATES,
    AudioDelta,
    AudioTranscriptDelta,
    Error,
    ItemTruncated,
    OutputAudioDuck,
    OutputAudioUnduck,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptCompleted,
    TranscriptDelta,
)

_START, _STOP = "start", "stop"  # push-to-talk markers on the microphone queue
_MAX_QUEUED_BLOCKS = 250  # 5 s of microphone audio; older blocks are dropped beyond that


class MicApp:
    """Microphone -> server -> speaker, for one user, across reconnections.

    ``keys`` feeds push-to-talk lines (``None`` ends input); by default they are read from
    standard input in a daemon thread. The counters and lists below are for tests and tools.
    """

    def __init__(self, options: Options, audio: AudioDevice, *, out: TextIO | None = None,
                 err: TextIO | None = None, keys: asyncio.Queue[str | None] | None = None,
                 live: bool | None = None,
                 on_event: Callable[[ServerEvent], None] | None = None) -> None:
        if options.rate not in AUDIO_RATES:
            raise ValueError(f"rate must be one of {AUDIO_RATES}")
        self.options = options
        self.audio = audio
        self.console = Console(out or sys.stdout, err or sys.stderr, live)
        self._keys = keys
        self._on_event = on_event
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mic: asyncio.Queue[np.ndarray | str] | None = None
        self._stop: asyncio.Event | None = None
        self._online = False
        self._talking = False  # push-to-talk: the user pressed Enter to talk
        self._turn_samples = 0
        self._mute_until = 0.0
        self.playback = ReplyPlayback(audio, options.rate)
        self._active_response: str | None = None
        self._expected_errors: collections.Counter[str] = collections.Counter()
        self.tools = None if options.tools is None else LocalTools(options.tools, self._ring)
        # Observable state.
        self.connections = 0
        self.session_ids: list[str] = []
        self.sent_samples = 0  # microphone samples (device rate) sent to the server
        self.muted_samples = 0  # microphone samples held back by --mute-while-speaking
        self.speech_started = 0
        self.transcripts: list[str] = []
        self.responses: list[ResponseDone] = []
        self.interruptions: list[Interruption] = []
        self.truncations: list[int] = []  # audio_end_ms confirmed by conversation.item.truncated
        self.errors: list[Error] = []

    def stop(self) -> None:
        """Ask :meth:`run` to finish (thread-safe)."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> int:
        """Connect, talk until stopped; returns the exit status (0 = stopped by the user)."""
        self._loop = asyncio.get_running_loop()
        self._mic = asyncio.Queue()
        self._stop = asyncio.Event()
        client: VoiceClient | None = None
        try:
            try:
                client = await VoiceClient.connect(self.options.url, api_key=self.options.key,
                                                   open_timeout=self.options.open_timeout_s)
            except VoiceClientError as error:
                self.console.error(explain(error))
                return 1
            try:
                self.audio.start(self._on_input)
            except DeviceError as error:
                self.console.error(str(error))
                await client.close()
                return 1
            if self.options.push_to_talk and self._keys is None:
                self._keys = asyncio.Queue()
                read_stdin_lines(self._loop, self._keys)
            while True:
                lost = await self._session(client)
                if lost is None:
                    return 0
                self.console.error(f"connection lost: {lost}")
                if not self.options.reconnect:
                    return 1
                reconnected = await self._reconnect()
                if reconnected is None:
                    return 0 if self._stop.is_set() else 1
                client = reconnected
        finally:
            self._online = False
            if self.tools is not None:
                self.tools.cancel_timers()
            self.audio.close()
            if client is not None and not client.closed:  # Ctrl-C: say goodbye to the server
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2)

    def _on_input(self, block: np.ndarray) -> None:
        """Called from the audio thread: hand the block to the event loop."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._offer, block)

    def _offer(self, item: np.ndarray | str) -> None:
        assert self._mic is not None
        if isinstance(item, np.ndarray) and not self._online:
            return
        while self._mic.qsize() >= _MAX_QUEUED_BLOCKS:
            self._mic.get_nowait()
        self._mic.put_nowait(item)

    # -- one connection --------------------------------------------------------------------

    async def _session(self, client: VoiceClient) -> str | None:
        """Runs one connection; returns None when stopped, else why the connection was lost."""
        assert self._mic is not None and self._stop is not None
        options = self.options
        self.connections += 1
        self.session_ids.append(client.session_id)
        self.playback.new_connection()
        self._active_response = None
        self._talking = False
        try:
            await client.configure(input_rate=options.rate, output_rate=options.rate,
                                   server_vad=not options.push_to_talk,
                                   language=options.language, instructions=options.instructions,
                                   tools=[*(self.tools.definitions() if self.tools else []),
                                          *mcp_servers(options.mcp)] or None,
                                   interruption={"hold": options.hold,
                                                 "echo_cancelled": self.audio.echo_cancelled})
        except Exception as error:  # the connection closed right away
            return describe_close(client, error)
        while not self._mic.empty():  # nothing recorded while offline is sent
            self._mic.get_nowait()
        self._online = True
        again = "re" if self.connections > 1 else ""
        mode = ("push-to-talk: press Enter to talk, Enter again to send"
                if options.push_to_talk else
                "hands-free, muted while the assistant speaks" if options.mute_while_speaking
                else "hands-free: just talk")
        self.console.line(f"{again}connected to {options.url} (session {client.session_id}); "
                          f"{mode}; Ctrl-C quits")
        tasks = [asyncio.ensure_future(self._receive(client)),
                 asyncio.ensure_future(self._send(client))]
        if options.push_to_talk:
            tasks.append(asyncio.ensure_future(self._read_keys(client)))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._online = False
            for task in [*tasks, stopping]:
                task.cancel()
            await asyncio.gather(*tasks, stopping, return_exceptions=True)
        self.console.reply_end()
        if self._stop.is_set():
            with contextlib.suppress(Exception):
                await client.close()
            return None
        failure = next((t.exception() for t in done if t is not stopping
                        and not t.cancelled() and t.exception() is not None), None)
        with contextlib.suppress(Exception):
            await client.close()
        return describe_close(client, failure)

    async def _reconnect(self) -> VoiceClient | None:
        assert self._stop is not None
        delays = self.options.reconnect_delays_s
        attempt = 0
        while True:
            delay = delays[min(attempt, len(delays) - 1)]
            attempt += 1
            self.console.note(f"reconnecting in {delay:g} s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            if self._stop.is_set():
                return None
            try:
                return await VoiceClient.connect(self.options.url, api_key=self.options.key,
                                                 open_timeout=self.options.open_timeout_s)
            except VoiceClientError as error:
                if refused_for_good(error):
                    self.console.error(explain(error))
                    return None
                self.console.note(f"still no connection: {error}")

    async def _send(self, client: VoiceClient) -> None:
        """Microphone blocks (and push-to-talk markers) to the server, in order."""
        assert self._mic is not None
        options = self.options
        resample = Resampler(self.audio.input_rate, options.rate)
        while True:
            item = await self._mic.get()
            if isinstance(item, str):
                await self._push_to_talk(client, item)
                continue
            if options.push_to_talk and not self._talking:
                continue
            if options.mute_while_speaking and self._assistant_audible():
                self.muted_samples += item.size
                continue
            await client.send_audio(resample(item), options.rate)
            self.sent_samples += item.size
            self._turn_samples += item.size

    def _assistant_audible(self) -> bool:
        now = time.monotonic()
        if self.audio.pending_samples > 0:
            self._mute_until = now + self.options.mute_tail_s
        return now < self._mute_until

    async def _push_to_talk(self, client: VoiceClient, marker: str) -> None:
        if marker == _START:
            self._talking = True
            self._turn_samples = 0
            await client.clear()
            return
        self._talking = False
        if self._turn_samples < self.audio.input_rate // 5:
            self.console.note("too short: press Enter, talk, then press Enter")
            await client.clear()
            return
        await client.commit()
        await client.create_response()
        self.console.status("thinking…")

    async def _read_keys(self, client: VoiceClient) -> None:
        assert self._keys is not None and self._mic is not None
        pressed = False
        self.console.note("press Enter to talk")
        while True:
            line = await self._keys.get()
            if line is None or line.strip().lower() in ("q", "quit", "exit"):
                self.stop()
                return
            pressed = not pressed
            if pressed:
                await self._barge_in(client, cancel=True)
                self._offer(_START)
                self.console.note("listening… press Enter to send")
                self.console.status("● recording")
            else:
                self._offer(_STOP)

    async def _barge_in(self, client: VoiceClient, *, cancel: bool) -> None:
        """The user talks over the reply: stop playback now and tell the server what was heard.

        With ``cancel`` (push-to-talk) the response is cancelled first; under server_vad the
        server has cancelled it already. The cancel must come before the truncate: the server's
        own estimate on cancel would otherwise overwrite the client's figure.
        """
        if cancel and self._active_response is not None:
            self.playback.drop(self._active_response)
            self._expected_errors["response_cancel_not_active"] += 1
            await client.cancel()
        interruption = self.playback.stop()
        if interruption is None:
            return  # nothing was playing
        self.interruptions.append(interruption)
        self._expected_errors["item_not_found"] += 1  # the server may have dropped an empty item
        await client.interrupt(interruption.played_ms)
        self.console.reply_end()
        self.console.note(f"interrupted after {interruption.played_ms / 1000:.1f} s of the reply")

    async def _receive(self, client: VoiceClient) -> None:
        async for event in client.events():
            if self._on_event is not None:
                self._on_event(event)
            await self._handle(client, event)
            if (note := mcp_note(event)) is not None:
                self.console.note(note)
            if self.tools is not None:
                await self.tools.observe(client, event)

    def _ring(self, label: str) -> None:
        self.console.line(f"timer {label}: time is up")
        self.audio.play(ring_tone(self.audio.output_rate))

    async def _handle(self, client: VoiceClient, event: ServerEvent) -> None:
        console = self.console
        if isinstance(event, SpeechStarted):
            self.speech_started += 1
            if not self.options.push_to_talk:
                await self._barge_in(client, cancel=False)
            console.status("listening…")
        elif isinstance(event, SpeechStopped):
            console.status("…")
        elif isinstance(event, TranscriptDelta):
            console.partial(event.confirmed, event.tentative)
        elif isinstance(event, TranscriptCompleted):
            self.transcripts.append(event.transcript)
            console.user(event.transcript, event.language)
        elif isinstance(event, ResponseCreated):
            self._active_response = response_id_of(event)
        elif isinstance(event, AudioTranscriptDelta | TextDelta):
            if not self.playback.dropped(event.response_id):
                console.reply_delta(event.delta)
        elif isinstance(event, AudioDelta):
            self.playback.play(event, client.output_rate)
        elif isinstance(event, OutputAudioDuck | OutputAudioUnduck):
            # The server judges a sound over the reply (the user, or only a backchannel, echo
            # or noise); speech_started stops the reply if it was the user.
            self.playback.follow(event)
        elif isinstance(event, ResponseDone):
            self._finish(event)
        elif isinstance(event, Error):
            if self._expected_errors[event.code] > 0:
                self._expected_errors[event.code] -= 1
                return
            self.errors.append(event)
            console.error(f"server error ({event.code}): {event.message}")
        elif isinstance(event, ItemTruncated):
            self.truncations.append(event.audio_end_ms)

    def _finish(self, event: ResponseDone) -> None:
        self.responses.append(event)
        response_id = response_id_of(event)
        if self._active_response == response_id:
            self._active_response = None
        self.console.reply_end()
        if event.status == "completed":
            if event.latency:
                self.console.line(format_latency(event.latency))
        elif not self.playback.dropped(response_id):  # else "interrupted" was shown
            reason = f": {event.reason.replace('_', ' ')}" if event.reason else ""
            self.console.note(f"reply {event.status}{reason}")
