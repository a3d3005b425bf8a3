"""A test whose prerequisite is missing fails under make test and skips in a bare pytest."""

from __future__ import annotations

import pytest

from tests.prerequisites import missing


def test_a_missing_prerequisite_fails_when_models_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOICE_REQUIRE_MODELS", "1")
    with pytest.raises(pytest.fail.Exception, match="recordings are absent"):
        missing("recordings are absent")


def test_a_missing_prerequisite_skips_in_a_bare_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICE_REQUIRE_MODELS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="recordings are absent"):
        missing("recordings are absent")
