"""What a test does when something it needs is absent."""

from __future__ import annotations

import os

import pytest


def missing(message: str) -> None:
    """A test's prerequisite is absent: a failure under ``make test`` (VOICE_REQUIRE_MODELS=1,
    which is what CI runs), a skip with the reason shown in a bare ``pytest`` run."""
    if os.environ.get("VOICE_REQUIRE_MODELS") == "1":
        pytest.fail(message)
    pytest.skip(message)
