"""Two real replicas behind a real HAProxy (Debian's): sessions spread over both; one replica
gets SIGTERM while its clients are mid-conversation; no turn is lost and every client ends on
the other replica (benchmarks/scale_out.py, which also reports the figures)."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.scale_out import run

pytestmark = pytest.mark.real_models


def test_a_replica_stopped_mid_conversation_loses_no_turn_and_its_clients_move(
        prepared_model: Any) -> None:
    for name in ("whisper-base", "qwen2.5-coder-0.5b-instruct", "en_US-joe-medium",
                 "smart-turn-v3.2"):
        prepared_model(name)
    clients, turns = 4, 3
    result = run(clients=clients, turns=turns)
    assert all(count and count >= 1 for count in result["sessions_before"].values()), result
    assert result["exit_code_of_stopped"] == 0  # it drained and exited cleanly
    assert result["lost"] == 0 and result["answered"] == clients * turns, result
    assert result["reconnected"] >= 1, result  # the stopped replica's clients moved
    assert result["survivor_sessions_at_end"] == clients, result
