"""voice-mic: talk to the voice service with this computer's microphone and speakers.

    voice-mic                              hands-free: just talk (the default)
    voice-mic --mute-while-speaking        hands-free on laptop speakers, no headphones
    voice-mic --push-to-talk               press Enter, talk, press Enter again
    voice-mic --list-devices               then --input-device / --output-device NAME|INDEX

The terminal shows what you say as it is recognised (partial, then final), the reply text as it
is written, and per turn the latency measured by the server from the end of your speech.

Which mode when:

  hands-free (default)    Headphones, or laptop speakers (echo cancellation is on, and the
                          server tells its own echo from you). The server hears when you start
                          and stop talking; talk over a reply to interrupt it (barge-in):
                          playback stops once your words are heard and the server keeps only
                          the part you heard; "mhm" or "okay" does not interrupt. If the reply
                          still interrupts itself on your hardware, use a mode below.
  --mute-while-speaking   Hands-free on laptop speakers: the microphone is not sent while the
                          reply plays (and a short tail after it), so the assistant does not
                          hear itself. You cannot interrupt it by voice; wait for it to finish.
  --push-to-talk          Noisy rooms, speakers without echo cancellation, or when you want to
                          decide when your turn ends: press Enter, talk, press Enter to send.
                          Enter during a reply interrupts it. Type q + Enter (or Ctrl-C) to quit.

--tools lets the assistant act on this computer: ask for the time ("What time is it?"), a
timer ("Set a timer for two minutes", it rings here) or notes ("Note that I need milk",
"What are my notes?"). The functions run in this program; the server only asks for them.
--mcp LABEL=URL names an MCP server (streamable HTTP) whose tools the service itself runs; the
service must allow its host (voice serve --mcp-host).

The server address defaults to ws://127.0.0.1:8765/v1/realtime; a server with API keys needs
--key or VOICE_API_KEY. --reconnect keeps trying (with backoff) when the connection drops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from clients.mic.app import MicApp
from clients.mic.console import PROGRAM
from clients.mic.devices import AudioDevice, DeviceError, SoundDeviceAudio, list_devices
from clients.mic.options import DEFAULT_URL, Options
from clients.mic.tools import default_notes_path
from voice.protocol import AUDIO_RATES, DEFAULT_AUDIO_RATE


def _mcp_server(text: str) -> tuple[str, str]:
    label, separator, url = text.partition("=")
    if not separator or not label or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected LABEL=http(s)://..., got {text!r}")
    return label, url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help="the service (default: %(default)s)")
    parser.add_argument("--key", default=os.environ.get("VOICE_API_KEY"),
                        help="API key, when the server has keys (default: $VOICE_API_KEY)")
    parser.add_argument("--language", help="pin the language you speak (ISO 639-1, e.g. de); "
                                           "default: detected each turn")
    parser.add_argument("--instructions", help="system instructions for the assistant")
    parser.add_argument("--rate", type=int, choices=AUDIO_RATES, default=DEFAULT_AUDIO_RATE,
                        help="audio sample rate to and from the server (default: %(default)s)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--push-to-talk", action="store_true",
                      help="manual turns: Enter to talk, Enter to send (see above)")
    mode.add_argument("--mute-while-speaking", action="store_true",
                      help="hands-free without headphones: do not send the microphone while "
                           "the reply plays")
    parser.add_argument("--mute-tail-ms", type=int, default=300,
                        help="with --mute-while-speaking, stay muted this long after the reply "
                             "(default: %(default)s)")
    parser.add_argument("--reconnect", action="store_true",
                        help="reconnect with backoff when the connection drops")
    parser.add_argument("--input-device", help="microphone: number or part of the name")
    parser.add_argument("--output-device", help="speaker: number or part of the name")
    parser.add_argument("--list-devices", action="store_true",
                        help="list input and output devices and exit")
    parser.add_argument("--tools", action="store_true",
                        help="let the assistant use local functions: the time, timers that "
                             "ring, a notes file (see below)")
    parser.add_argument("--no-aec", action="store_true",
                        help="no echo cancellation (headsets; by default what the speaker plays "
                        "is taken out of the microphone, so laptop speakers work hands-free)")
    parser.add_argument("--duck", action="store_true",
                        help="while the service judges a sound over the reply, play the reply "
                             "quieter instead of pausing it (by default it pauses, as a person "
                             "does, and goes on from there if it was only a 'mhm' or a noise)")
    parser.add_argument("--mcp", action="append", metavar="LABEL=URL", type=_mcp_server,
                        help="an MCP server whose tools the service runs for you (repeatable)")
    parser.add_argument("--notes", type=Path, default=None,
                        help=f"with --tools, the notes file (default: {default_notes_path()})")
    return parser


def main(argv: Sequence[str] | None = None, *, audio: AudioDevice | None = None,
         out: TextIO | None = None, err: TextIO | None = None,
         keys: asyncio.Queue[str | None] | None = None) -> int:
    """The ``voice-mic`` command. ``audio``, ``out``, ``err`` and ``keys`` replace the sound
    card, the terminal and the keyboard (for tests)."""
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        if args.list_devices:
            list_devices(out)
            return 0
        if audio is None:
            audio = SoundDeviceAudio(args.rate, args.input_device, args.output_device,
                                     echo_cancellation=not args.no_aec)
            print(audio.echo_note, file=out)
    except DeviceError as error:
        print(f"{PROGRAM}: {error}", file=err)
        return 1
    options = Options(url=args.url, key=args.key or None, language=args.language,
                      rate=args.rate, push_to_talk=args.push_to_talk,
                      mute_while_speaking=args.mute_while_speaking,
                      mute_tail_s=max(0, args.mute_tail_ms) / 1000, reconnect=args.reconnect,
                      hold=not args.duck,
                      instructions=args.instructions,
                      tools=(args.notes or default_notes_path()) if args.tools else None,
                      mcp=tuple(args.mcp or ()))
    app = MicApp(options, audio, out=out, err=err, keys=keys)
    try:
        return asyncio.run(app.run())
    except KeyboardInterrupt:
        print("", file=out)
        return 0
    except DeviceError as error:
        print(f"{PROGRAM}: {error}", file=err)
        return 1
