"""voice-mic pauses (or, with --duck, lowers) the reply while the server judges a sound over
it (``output_audio_buffer.duck`` / ``unduck``), with the fake server and audio device."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from clients.mic.app import MicApp
from clients.mic.devices import PlaybackBuffer
from clients.mic.options import Options
from tests.fake_audio import FakeAudio
from tests.fakes import tone
from tests.live import url_of
from tests.test_mic import LONG_REPLY, RATE, fake_server, run, running_app, until


async def mhm_two_seconds_into_the_reply(app: MicApp, audio: FakeAudio) -> None:
    """A question, then, 2 s into the reply's playback, a "mhm" over it through a quiet
    microphone (the client cancels its echo)."""
    await until(lambda: app.connections == 1, 10, "the connection")
    audio.say(tone(1.5))
    await until(lambda: audio.played_samples >= 2 * RATE, 30, "2 s of the reply")
    audio.say(tone(0.4))


def test_a_backchannel_over_the_reply_pauses_it_and_it_plays_on_from_there() -> None:
    with fake_server([("Tell me a story", "en"), ("Mhm.", "en")], [LONG_REPLY],
                     chat_delay_s=0.03) as server:
        async def scenario() -> None:
            audio = FakeAudio(rate=RATE)
            async with running_app(Options(url=url_of(server)), audio) as run_:
                app = run_.app
                await mhm_two_seconds_into_the_reply(app, audio)
                types = lambda: [e.type for e in run_.events]  # noqa: E731
                await until(lambda: "output_audio_buffer.duck" in types(), 10, "the hold")
                await asyncio.sleep(0.05)  # the fade-out block
                held_at, left = audio.played_samples, audio.pending_samples
                await until(lambda: "output_audio_buffer.unduck" in types(), 10, "playing on")
                # Nothing played while held (a block or two of the reply at most, in flight),
                # and nothing of it was dropped.
                assert audio.played_samples - held_at <= RATE // 25
                assert audio.pending_samples >= left - RATE // 25
                await until(lambda: audio.played_samples > held_at + RATE, 10, "more reply")
                assert app.interruptions == [] and app.speech_started == 1
                duck = next(e for e in run_.events if e.type == "output_audio_buffer.duck")
                assert duck.fields["hold"] is True
                # What the speaker played was never merely quieter: full, a fade out and
                # in around the pause, full again.
                played = audio.played_audio().astype(float)
                peaks = np.abs(played[:played.size // 480 * 480]).reshape(-1, 480).max(axis=1)
                full = np.median(peaks[:50])
                assert np.flatnonzero(peaks < full * 0.9).size <= 4
        run(scenario)


def test_with_duck_a_backchannel_over_the_reply_lowers_it_and_it_plays_on_at_full_volume(
) -> None:
    with fake_server([("Tell me a story", "en"), ("Mhm.", "en")], [LONG_REPLY],
                     chat_delay_s=0.03) as server:
        async def scenario() -> None:
            audio = FakeAudio(rate=RATE)
            async with running_app(Options(url=url_of(server), hold=False), audio) as run_:
                app = run_.app
                await mhm_two_seconds_into_the_reply(app, audio)
                types = lambda: [e.type for e in run_.events]  # noqa: E731
                await until(lambda: "output_audio_buffer.unduck" in types(), 10, "unducking")
                restored_at = audio.played_samples
                await until(lambda: audio.played_samples > restored_at + RATE, 10, "more reply")
                assert app.interruptions == [] and app.speech_started == 1
                # Peak level of each 20 ms of what the speaker played: full, then 18 dB
                # quieter while the server judged the "mhm", then full again.
                played = audio.played_audio().astype(float)
                peaks = np.abs(played[:played.size // 480 * 480]).reshape(-1, 480).max(axis=1)
                full = np.median(peaks[:50])
                ducked = np.flatnonzero(peaks < full / 4)
                assert ducked.size >= 5, "the reply never played quieter"
                assert 0.1 * full < np.median(peaks[ducked]) < 0.16 * full  # -18 dB
                assert np.median(peaks[-25:]) == pytest.approx(full, rel=0.05)
        run(scenario)


def test_a_ducked_playback_buffer_ramps_to_the_new_volume_over_one_block() -> None:
    buffer = PlaybackBuffer()
    buffer.push(np.full(300, 1000, np.int16))
    out = np.zeros(100, np.int16)
    buffer.read_into(out)
    assert (out == 1000).all()
    buffer.gain = 0.5
    buffer.read_into(out)
    assert out[0] == 1000 and out[-1] == 500 and (np.diff(out) <= 0).all()
    buffer.read_into(out)
    assert (out == 500).all()


def test_a_held_playback_buffer_fades_out_over_one_block_then_keeps_its_place() -> None:
    buffer = PlaybackBuffer()
    buffer.push(np.full(300, 1000, np.int16))
    out = np.zeros(100, np.int16)
    buffer.held = True
    assert buffer.read_into(out) == 100
    assert out[0] == 1000 and out[-1] == 0 and (np.diff(out) <= 0).all()
    assert buffer.read_into(out) == 0 and (out == 0).all() and buffer.pending == 200
    buffer.held = False
    buffer.read_into(out)
    assert out[0] == 0 and out[-1] == 1000 and (np.diff(out) >= 0).all()
    buffer.read_into(out)
    assert (out == 1000).all() and buffer.pending == 0


@pytest.mark.parametrize("cancelled", [True, False])
def test_voice_mic_tells_the_service_whether_it_cancels_the_replys_echo(cancelled: bool) -> None:
    # The service then holds the reply for a voice over its first moments too.
    with fake_server([], []) as server:
        async def scenario() -> None:
            audio = FakeAudio(rate=RATE)
            audio.echo_cancelled = cancelled
            async with running_app(Options(url=url_of(server)), audio) as run_:
                await until(lambda: any(e.type == "session.updated" for e in run_.events), 10,
                            "the session's settings")
                updated = next(e for e in run_.events if e.type == "session.updated")
                interruption = updated.fields["session"]["interruption"]
                assert interruption["echo_cancelled"] is cancelled
                assert interruption["hold"] is True
        run(scenario)
