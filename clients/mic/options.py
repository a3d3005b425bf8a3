"""voice-mic's settings (the command line fills them in; tests build them directly)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from voice.protocol import DEFAULT_AUDIO_RATE

DEFAULT_URL = "ws://127.0.0.1:8765/v1/realtime"


@dataclasses.dataclass
class Options:
    url: str = DEFAULT_URL
    key: str | None = None
    language: str | None = None
    rate: int = DEFAULT_AUDIO_RATE
    push_to_talk: bool = False
    mute_while_speaking: bool = False
    mute_tail_s: float = 0.3
    # While the server judges a sound over the reply: pause it (and go on from there if it
    # was no interruption), or only lower it (--duck).
    hold: bool = True
    reconnect: bool = False
    instructions: str | None = None
    tools: Path | None = None  # --tools: local functions, notes in this file
    mcp: tuple[tuple[str, str], ...] = ()  # --mcp LABEL=URL: MCP servers the service runs
    reconnect_delays_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # then the last again
    open_timeout_s: float = 10.0
