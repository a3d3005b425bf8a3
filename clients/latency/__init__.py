"""voice-latency: latency, load and language tests of a running service (``voice-latency
--help``; the usage is in ``cli.py``).

speech.py: the speech it plays (WAV files, generated questions); accounting.py: what the server
did with each turn (completed, cancelled, failed, no reply; lost); runner.py: sessions that play
turns at real-time pace; report.py: the printed summary and the plot; languages.py: the language
suite's figures; cli.py: the command line.
"""

from clients.latency.accounting import SessionLedger, Turn, percentiles
from clients.latency.cli import is_loopback, main
from clients.latency.languages import reply_language
from clients.latency.speech import QUESTIONS, RATE, Utterance, generate_utterances, load_wav

__all__ = ["QUESTIONS", "RATE", "SessionLedger", "Turn", "Utterance",
           "generate_utterances", "is_loopback", "load_wav", "main", "percentiles",
           "reply_language"]
