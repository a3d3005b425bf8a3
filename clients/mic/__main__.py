"""``python -m clients.mic``: the same as the ``voice-mic`` command."""

import sys

from clients.mic.cli import main

sys.exit(main())
