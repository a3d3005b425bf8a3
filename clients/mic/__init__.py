"""voice-mic, the desktop microphone client (``voice-mic --help`` describes its modes).

devices.py: the sound card (capture, playback, resampling); console.py: what the user sees;
app.py: the session (streaming, replies, barge-in, push-to-talk, mute-while-speaking,
reconnection); cli.py: the command line.
"""

from clients.mic.cli import main

__all__ = ["main"]
