"""``python -m clients.latency``: the same as the ``voice-latency`` command."""

import sys

from clients.latency.cli import main

sys.exit(main())
