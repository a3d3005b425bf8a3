"""What voice-mic shows: the console (partial transcripts, reply text, notes, errors), the
latency line, how connection failures read, and the keyboard for push-to-talk."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TextIO

from clients.client import VoiceClient, VoiceClientError
from voice.protocol import LATENCY_STAGES

PROGRAM = "voice-mic"

FIRST_AUDIO_SENT = "first_audio_sent_ms"  # the stage the latency line leads with
# What the line calls the other stages of LATENCY_STAGES (a stage without a label here is shown
# under its own name).
LATENCY_LABELS = {"vad_ms": "end of speech heard", "transcript_ms": "transcript",
                  "llm_first_token_ms": "first token", "first_audio_ready_ms": "audio ready"}


def format_latency(latency: dict[str, float]) -> str:
    """``ResponseDone.latency`` as one line (milliseconds after the end of the user's speech),
    its stages in the order of ``LATENCY_STAGES``."""
    stages = ", ".join(f"{LATENCY_LABELS.get(key, key.removesuffix('_ms'))} {latency[key]:.0f}"
                       for key in LATENCY_STAGES if key in latency and key != FIRST_AUDIO_SENT)
    total = latency.get(FIRST_AUDIO_SENT)
    head = (f"{total:.0f} ms from the end of your speech to the first reply audio"
            if total is not None else "no reply audio")
    return f"latency: {head}" + (f" ({stages} ms)" if stages else "")


class Console:
    """What the user sees. On a terminal, partial transcripts update one status line in place;
    elsewhere (a pipe, a test) every line is printed in full."""

    def __init__(self, out: TextIO, err: TextIO, live: bool | None = None) -> None:
        self.out = out
        self.err = err
        self.live = live if live is not None else _isatty(out)
        self._status = False
        self._reply_open = False
        self._last_partial = ""

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _settle(self) -> None:
        """End the status line or the reply line in progress."""
        if self._status:
            self._write("\r\x1b[K")
            self._status = False
        if self._reply_open:
            self._write("\n")
            self._reply_open = False

    def line(self, text: str) -> None:
        self._settle()
        self._write(text + "\n")

    def note(self, text: str) -> None:
        self.line(f"  ({text})")

    def error(self, text: str) -> None:
        self._settle()
        self.err.write(f"{PROGRAM}: {text}\n")
        self.err.flush()

    def status(self, text: str) -> None:
        """A transient line (terminal only)."""
        if not self.live:
            return
        if self._reply_open:
            self._settle()
        self._write("\r\x1b[K" + text)
        self._status = True

    def partial(self, confirmed: str, tentative: str) -> None:
        text = " ".join(part for part in (confirmed.strip(), tentative.strip()) if part)
        if not text or text == self._last_partial:
            return
        self._last_partial = text
        if self.live:
            self.status(f"you: {confirmed.strip()} \x1b[2m{tentative.strip()}\x1b[0m…")
        else:
            self.line(f"you (partial): {text} …")

    def user(self, text: str, language: str | None) -> None:
        self._last_partial = ""
        if text.strip():
            self.line(f"you: {text.strip()}" + (f"  [{language}]" if language else ""))
        else:
            self.note("nothing intelligible heard")

    def reply_delta(self, delta: str) -> None:
        if self._status:
            self._write("\r\x1b[K")
            self._status = False
        if not self._reply_open:
            self._write("assistant: ")
            delta = delta.lstrip()
            self._reply_open = True
        self._write(delta)

    def reply_end(self) -> None:
        if self._reply_open:
            self._write("\n")
            self._reply_open = False


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- the keyboard (push-to-talk) -------------------------------------------------------------


def read_stdin_lines(loop: asyncio.AbstractEventLoop, keys: asyncio.Queue[str | None]) -> None:
    """Feed standard input lines to ``keys`` from a daemon thread (never blocks the loop)."""

    def reader() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(keys.put_nowait, line)
            loop.call_soon_threadsafe(keys.put_nowait, None)
        except (RuntimeError, ValueError, OSError):
            return

    threading.Thread(target=reader, daemon=True, name="voice-mic-keys").start()


# -- connection failures, as the user reads them -----------------------------------------------


def http_status(error: BaseException) -> int | None:
    cause = error.__cause__
    response = getattr(cause, "response", None)
    code = getattr(response, "status_code", None)
    return int(code) if isinstance(code, int) else None


def refused_for_good(error: VoiceClientError) -> bool:
    return http_status(error) in (401, 403)


def explain(error: VoiceClientError) -> str:
    message = " ".join(str(error).split())
    if http_status(error) == 401:
        message += " (wrong or missing API key: pass --key or set VOICE_API_KEY)"
    return message


def describe_close(client: VoiceClient, failure: BaseException | None) -> str:
    code = client.close_code
    reason = client.close_reason
    if code is None and failure is not None:
        return " ".join(f"{type(failure).__name__}: {failure}".split())
    if code in (None, 1006):
        return "the connection dropped without a goodbye"
    meanings = {1000: "closed", 1001: "going away", 1008: "policy", 1009: "message too big",
                1011: "server error"}
    detail = reason or meanings.get(code, "")
    return f"the server closed the connection ({code}{' ' + detail if detail else ''})"
