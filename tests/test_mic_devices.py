"""voice-mic's sound devices (clients/mic/devices.py) against a fake ``sounddevice`` module:
listing and choosing devices, the PortAudio callbacks, echo cancellation on what was played,
the playback buffer, and the fake microphone the other voice-mic tests speak through."""

from __future__ import annotations

import io
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clients.mic import devices, main
from clients.mic.devices import DeviceError, PlaybackBuffer, SoundDeviceAudio, resolve_device
from tests.fake_audio import FakeAudio
from tests.fakes import tone


class FakeSoundDevice:
    """Just enough of the sounddevice module."""

    def __init__(self, devices: list[dict[str, Any]], defaults: tuple[int, int]) -> None:
        self.devices = devices
        self.defaults = defaults
        self.streams: list[FakeStream] = []

    def query_devices(self, device: int | None = None, kind: str | None = None) -> Any:
        if kind is not None:
            index = self.defaults[0 if kind == "input" else 1]
            if index < 0:
                raise RuntimeError("Error querying device -1")
            return dict(self.devices[index], index=index)
        if device is not None:
            return dict(self.devices[device], index=device)
        return list(self.devices)

    def query_hostapis(self) -> list[dict[str, Any]]:
        return [{"name": "ALSA"}]

    def check_input_settings(self, device: int, samplerate: int, **kwargs: Any) -> None:
        if samplerate != self.devices[device]["default_samplerate"]:
            raise RuntimeError("Invalid sample rate")

    def check_output_settings(self, device: int, samplerate: int, **kwargs: Any) -> None:
        self.check_input_settings(device, samplerate)

    def InputStream(self, **kwargs: Any) -> FakeStream:  # noqa: N802 (sounddevice's name)
        self.streams.append(FakeStream("input", kwargs))
        return self.streams[-1]

    def OutputStream(self, **kwargs: Any) -> FakeStream:  # noqa: N802
        self.streams.append(FakeStream("output", kwargs))
        return self.streams[-1]


class FakeStream:
    def __init__(self, kind: str, settings: dict[str, Any]) -> None:
        self.kind, self.settings, self.state = kind, settings, "open"

    def start(self) -> None:
        self.state = "started"

    def stop(self) -> None:
        self.state = "stopped"

    def close(self) -> None:
        self.state = "closed"


def _device(name: str, inputs: int, outputs: int, rate: float = 48_000.0) -> dict[str, Any]:
    return {"name": name, "hostapi": 0, "max_input_channels": inputs,
            "max_output_channels": outputs, "default_samplerate": rate}


LAPTOP = [_device("HDA Intel PCH: ALC257 Analog (hw:0,0)", 2, 2),
          _device("USB Headset: Audio (hw:1,0)", 1, 2, 24_000.0),
          _device("HDMI 0 (hw:0,3)", 0, 8)]


@pytest.fixture
def laptop(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    sd = FakeSoundDevice(LAPTOP, (0, 0))
    monkeypatch.setattr(devices, "_sounddevice", lambda: sd)
    return sd


def test_list_devices_shows_inputs_and_outputs_with_the_defaults(laptop: FakeSoundDevice) -> None:
    out = io.StringIO()
    assert main(["--list-devices"], out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    inputs, outputs = text.split("Output devices:")
    assert "Input devices:" in inputs and "HDMI" not in inputs
    assert "*   0  HDA Intel PCH: ALC257 Analog (hw:0,0)  (2 ch, 48000 Hz, ALSA)" in inputs
    assert "    1  USB Headset" in inputs
    assert "HDMI 0 (hw:0,3)  (8 ch" in outputs and "*   0  HDA Intel" in outputs


def test_devices_are_chosen_by_number_or_name_and_a_missing_one_is_one_line(
    laptop: FakeSoundDevice,
) -> None:
    assert resolve_device(laptop, None, "input") == 0
    assert resolve_device(laptop, "usb", "input") == 1
    assert resolve_device(laptop, "hdmi", "output") == 2
    assert resolve_device(laptop, "1", "output") == 1
    for spec, kind, message in (("hdmi", "input", "no input device matches 'hdmi'"),
                                ("7", "output", "there is no output device number 7"),
                                ("hw:", "input", "matches several input devices")):
        with pytest.raises(DeviceError, match=message):
            resolve_device(laptop, spec, kind)
    err = io.StringIO()
    assert main(["--input-device", "Blue Yeti"], out=io.StringIO(), err=err) == 1
    assert err.getvalue() == ("voice-mic: no input device matches 'Blue Yeti' "
                              "(see --list-devices)\n")
    laptop.defaults = (-1, -1)  # a machine without sound cards
    err = io.StringIO()
    assert main([], out=io.StringIO(), err=err) == 1
    assert err.getvalue().startswith("voice-mic: there is no default input device")
    out = io.StringIO()
    laptop.devices = []
    assert main(["--list-devices"], out=out, err=io.StringIO()) == 0
    assert out.getvalue().count("(none)") == 2


def test_sound_device_audio_wires_the_portaudio_callbacks(laptop: FakeSoundDevice) -> None:
    audio = SoundDeviceAudio(24_000, "usb", "usb", echo_cancellation=False)
    assert (audio.input_rate, audio.output_rate) == (24_000, 24_000)
    other = SoundDeviceAudio(16_000, None, None)  # unsupported: the device's own rate
    assert (other.input_rate, other.output_rate) == (48_000, 48_000)
    received: list[np.ndarray] = []
    audio.start(received.append)
    microphone = next(s for s in laptop.streams if s.kind == "input")
    speaker = next(s for s in laptop.streams if s.kind == "output")
    assert microphone.state == speaker.state == "started"
    assert microphone.settings["blocksize"] == 480 and microphone.settings["channels"] == 1
    microphone.settings["callback"](np.full((480, 1), 7, np.int16), 480, None, None)
    assert received[0].shape == (480,) and received[0][0] == 7
    assert audio.play(np.arange(1, 301, dtype=np.int16)) == 0
    assert audio.play(np.arange(1, 101, dtype=np.int16)) == 300
    block = np.ones((256, 1), np.int16)
    speaker.settings["callback"](block, 256, None, None)
    assert block[0, 0] == 1 and block[255, 0] == 256
    assert (audio.played_samples, audio.pending_samples) == (256, 144)
    assert audio.stop_playback() == 256 and audio.pending_samples == 0
    speaker.settings["callback"](block, 256, None, None)
    assert not block.any() and audio.played_samples == 256  # silence is not "played"
    audio.close()
    assert microphone.state == speaker.state == "closed"


def test_with_echo_cancellation_the_played_audio_is_taken_out_of_the_microphone(
        laptop: FakeSoundDevice) -> None:
    audio = SoundDeviceAudio(24_000, "usb", "usb")
    assert audio.echo is not None and audio.echo_note.startswith("echo cancellation on")
    other = SoundDeviceAudio(16_000, None, None)  # 48 kHz both ways: still on
    assert other.echo is not None
    received: list[np.ndarray] = []
    audio.start(received.append)
    microphone = next(s for s in laptop.streams if s.kind == "input")
    speaker = next(s for s in laptop.streams if s.kind == "output")
    reply = (np.sin(np.arange(24_000 * 3) * 2 * np.pi * 300 / 24_000) * 8000).astype(np.int16)
    audio.play(reply)
    for _ in range(0, reply.size, 480):  # the speaker plays, the microphone hears it
        block = np.zeros((480, 1), np.int16)
        speaker.settings["callback"](block, 480, None, None)
        microphone.settings["callback"](block // 3, 480, None, None)
    tail = np.concatenate(received)[-24_000:].astype(np.float64)
    heard = (reply[-24_000:] // 3).astype(np.float64)
    assert np.mean(tail ** 2) < np.mean(heard ** 2) / 100  # more than 20 dB less
    audio.close()
    off = SoundDeviceAudio(24_000, "usb", "usb", echo_cancellation=False)
    assert off.echo is None and off.echo_note == "echo cancellation off (--no-aec)"


def test_the_playback_buffer_counts_what_was_consumed() -> None:
    buffer = PlaybackBuffer()
    assert buffer.push(np.ones(100, np.int16)) == 0
    out = np.zeros(60, np.int16)
    assert buffer.read_into(out) == 60 and buffer.push(np.ones(10, np.int16)) == 100
    assert buffer.read_into(out) == 50 and not out[50:].any()
    assert (buffer.played, buffer.pending) == (110, 0)


def test_the_fake_microphone_says_a_wav_file_at_real_time_pace(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    stereo = np.repeat(tone(0.2, 8_000)[:, None], 2, axis=1)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8_000)
        wav.writeframes(stereo.tobytes())
    audio = FakeAudio.from_wav(path, 16_000)
    blocks: list[np.ndarray] = []
    started = time.monotonic()
    audio.start(blocks.append)
    while audio.speaking and time.monotonic() - started < 5:
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    audio.close()
    heard = np.concatenate(blocks)
    assert elapsed >= 0.15 and all(block.size == 320 for block in blocks)
    assert np.abs(heard[:3000]).mean() > 5000  # 0.2 s of the tone, resampled to 16 kHz


