"""``voice-mic --tools``: real local functions the assistant can call while you talk to it.

- ``get_time``: the date, weekday and time of this computer.
- ``set_timer``: a countdown that really rings (a beep on the speakers and a line on screen)
  after the given minutes and/or seconds, with an optional label.
- ``add_note`` / ``read_notes``: a notes file (one line per note, newest last), by default
  ``notes.txt`` in the user's data folder (``--notes PATH`` elsewhere).

The functions run here, in the client: the server only sees the declarations and the results
(Realtime function calling, docs/protocol.md). When a reply calls functions, their results are
sent as ``function_call_output`` items as soon as each call is complete, and once the reply is
done one ``response.create`` asks the assistant to speak the outcome.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clients.client import VoiceClient
from voice.protocol import (
    FunctionCallArgumentsDone,
    ItemDone,
    OutputItemDone,
    ResponseDone,
    ServerEvent,
)

MAX_TIMER_S = 24 * 3600


def mcp_servers(servers: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """``--mcp LABEL=URL`` as session tools the service runs; you are the one asking at the
    microphone, so calls need no approval."""
    return [{"type": "mcp", "server_label": label, "server_url": url,
             "require_approval": "never"} for label, url in servers]


def mcp_note(event: ServerEvent) -> str | None:
    """A line for the screen about an MCP listing or call the service made, if ``event`` is
    one."""
    if isinstance(event, ItemDone) and event.item.get("type") == "mcp_list_tools":
        names = ", ".join(tool.get("name", "?") for tool in event.item.get("tools") or [])
        return f"MCP {event.item.get('server_label')}: {names or 'no tools'}"
    if isinstance(event, OutputItemDone) and event.item.get("type") == "mcp_call":
        item = event.item
        error = item.get("error")
        outcome = f"failed: {error.get('message')}" if error else f"-> {item.get('output')}"
        return (f"MCP {item.get('server_label')}.{item.get('name')}({item.get('arguments')}) "
                f"{outcome}")
    return None
NOTES_SHOWN = 10

DEFINITIONS: list[dict[str, Any]] = [
    {"type": "function", "name": "get_time",
     "description": "The current date, weekday and local time.",
     "parameters": {"type": "object", "properties": {}}},
    {"type": "function", "name": "set_timer",
     "description": "Start a countdown timer that rings when it ends.",
     "parameters": {"type": "object", "properties": {
         "minutes": {"type": "number", "minimum": 0},
         "seconds": {"type": "number", "minimum": 0},
         "label": {"type": "string", "description": "what the timer is for"}}}},
    {"type": "function", "name": "add_note", "description": "Write down a note for the user.",
     "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                    "required": ["text"]}},
    {"type": "function", "name": "read_notes", "description": "The user's latest notes.",
     "parameters": {"type": "object", "properties": {}}},
]


def default_notes_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("voice-assistant")) / "notes.txt"


class LocalTools:
    """The functions, and the part of the conversation that runs them. ``ring(label)`` is
    called when a timer ends (on the event loop)."""

    def __init__(self, notes_path: Path, ring: Callable[[str], None],
                 now: Callable[[], datetime.datetime] = datetime.datetime.now) -> None:
        self.notes_path = notes_path
        self._ring = ring
        self._now = now
        self._timers: set[asyncio.Task[None]] = set()
        self._answered: set[str] = set()  # responses whose calls were answered
        self.calls: list[tuple[str, dict[str, Any], str]] = []  # (name, arguments, result)

    @staticmethod
    def definitions() -> list[dict[str, Any]]:
        return DEFINITIONS

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run one function; the result as JSON text (an ``error`` key when it failed)."""
        try:
            result = getattr(self, f"_{name}")(**arguments) if name in _NAMES else {
                "error": f"no function named {name}"}
        except (TypeError, ValueError, OSError) as error:
            result = {"error": str(error)}
        text = json.dumps(result, ensure_ascii=False)
        self.calls.append((name, arguments, text))
        return text

    async def observe(self, client: VoiceClient, event: ServerEvent) -> None:
        """Run the calls of a reply as they complete; ask for the spoken outcome after it."""
        if isinstance(event, FunctionCallArgumentsDone):
            try:
                arguments = json.loads(event.arguments)
            except ValueError:
                arguments = {}
            output = self.call(event.name, arguments if isinstance(arguments, dict) else {})
            await client.send_event({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": event.call_id, "output": output}})
            self._answered.add(event.response_id)
        elif isinstance(event, ResponseDone):
            response_id = str(event.response.get("id"))
            if response_id in self._answered:
                self._answered.discard(response_id)
                if event.status == "completed":
                    await client.create_response()

    def cancel_timers(self) -> None:
        for task in self._timers:
            task.cancel()

    # -- the functions -----------------------------------------------------------------------

    def _get_time(self) -> dict[str, Any]:
        now = self._now()
        return {"date": now.date().isoformat(), "weekday": now.strftime("%A"),
                "time": now.strftime("%H:%M")}

    def _set_timer(self, minutes: float = 0, seconds: float = 0,
                   label: str = "") -> dict[str, Any]:
        total = float(minutes) * 60 + float(seconds)
        if not 0 < total <= MAX_TIMER_S:
            raise ValueError(f"a timer must run more than 0 s and at most {MAX_TIMER_S} s")
        default = f"{total / 60:g} min" if total >= 60 else f"{total:g} s"
        label = str(label) or default
        task = asyncio.get_running_loop().create_task(self._countdown(total, label))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)
        ends = self._now() + datetime.timedelta(seconds=total)
        return {"started": True, "label": label, "rings_at": ends.strftime("%H:%M:%S")}

    async def _countdown(self, seconds: float, label: str) -> None:
        await asyncio.sleep(seconds)
        self._ring(label)

    def _add_note(self, text: str) -> dict[str, Any]:
        text = " ".join(str(text).split())
        if not text:
            raise ValueError("the note is empty")
        self.notes_path.parent.mkdir(parents=True, exist_ok=True)
        with self.notes_path.open("a", encoding="utf-8") as notes:
            notes.write(f"{self._now().strftime('%Y-%m-%d %H:%M')}  {text}\n")
        return {"saved": True, "note": text}

    def _read_notes(self) -> dict[str, Any]:
        if not self.notes_path.is_file():
            return {"notes": []}
        lines = self.notes_path.read_text(encoding="utf-8").splitlines()
        return {"notes": lines[-NOTES_SHOWN:], "total": len(lines)}


_NAMES = {definition["name"] for definition in DEFINITIONS}


def ring_tone(rate: int) -> np.ndarray:
    """Three short beeps at 880 Hz, int16 mono at ``rate``."""
    beep = np.sin(2 * np.pi * 880 * np.arange(int(0.18 * rate)) / rate) * 0.4 * 32767
    gap = np.zeros(int(0.12 * rate))
    return np.concatenate([beep, gap] * 3).astype(np.int16)
