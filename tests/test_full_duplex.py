"""Full duplex on a simulated laptop with the real models (benchmarks/full_duplex.py's client):
the reply's echo through a reverberant room does not make the assistant interrupt itself, the
user's "stop" does, and without the guard a reply cut by an acknowledgement resumes. Each test
is one reply played in real time (10-20 s).

Backchannels and noise bursts under AEC + guard are measured by the benchmark, not asserted
here: such a sound disturbs the echo canceller, whose residual echo whisper sometimes mishears
as words, so whether the reply is cut varies from run to run (docs/benchmarks.md, "Full
duplex"). For the same reason resuming is checked on a headset, where no echo disturbs
anything. Their logic, and resuming after a wordless sound, is asserted with fakes in
tests/test_session_duplex.py."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import numpy as np
import pytest

from benchmarks.full_duplex import Config, Outcome, one_reply
from benchmarks.laptop import piper
from tests.live import default_models_server, url_of
from voice.server import VoiceServer

pytestmark = pytest.mark.real_models

GUARD_ONLY = Config("guard, no AEC", aec=False, guard=True)
AEC_AND_GUARD = Config("AEC + guard", aec=True, guard=True)
TODAY = Config("guard off, no AEC", aec=False, guard=False)
HEADSET = Config("headset, guard off", aec=False, guard=False, headset=True)


@pytest.fixture(scope="module")
def server(prepared_model) -> Iterator[VoiceServer]:  # type: ignore[no-untyped-def]
    with default_models_server(prepared_model, 60) as server:
        yield server


@pytest.fixture(scope="module")
def question(server: VoiceServer) -> np.ndarray:
    return piper("Tell me about the city of Berlin.")


def reply(server: VoiceServer, config: Config, question: np.ndarray,
          event: np.ndarray | None = None, scenario: str = "echo") -> Outcome:
    return asyncio.run(one_reply(url_of(server), config, scenario, "en", question, event, "-",
                                 random.Random(11), noisy=False))


def test_the_guard_keeps_the_replys_echo_from_interrupting_it(server: VoiceServer,
                                                               question: np.ndarray) -> None:
    outcome = reply(server, GUARD_ONLY, question)
    assert outcome.error is None
    assert outcome.self_interruptions == 0
    assert outcome.played_s > 3  # the reply played out


def test_without_guard_or_echo_cancelling_the_echo_cuts_the_reply(server: VoiceServer,
                                                                   question: np.ndarray) -> None:
    outcome = reply(server, TODAY, question)
    assert outcome.self_interruptions > 0  # the problem the guard and AEC solve


def test_the_users_stop_over_the_reply_cuts_it(server: VoiceServer,
                                               question: np.ndarray) -> None:
    outcome = reply(server, AEC_AND_GUARD, question, piper("Stop, wait a moment."),
                    "interrupt")
    assert outcome.interrupted and outcome.self_interruptions == 0
    assert outcome.delay_ms is not None and outcome.delay_ms < 3000


def test_without_the_guard_an_acknowledgement_cuts_the_reply_and_it_resumes(
        server: VoiceServer, question: np.ndarray) -> None:
    # On a headset the microphone hears no echo, so nothing but the user's "yeah, right"
    # can cut the reply: with the guard off it is a barge-in like any speech, and once
    # transcribed it only acknowledges the reply, which goes on from where it stopped.
    outcome = reply(server, HEADSET, question, piper("Yeah, right."), "backchannel")
    assert outcome.error is None and outcome.self_interruptions == 0
    assert outcome.interrupted and outcome.resumed
    assert outcome.played_s > 3  # the rest was spoken after all
