"""Server events checked against the official ``openai`` SDK's GA Realtime types.

Each event is validated by the pydantic model the SDK's ``RealtimeServerEvent`` union holds
for its ``type``. The SDK's models accept unknown keys, so every key they do not declare is
then looked for, and only our documented extensions (``docs/protocol.md``) may be among them:
they are taken out first. Our documented extension events (speech over a reply: duck, unduck,
backchannel, resumed) are not GA types: clients skip types they do not know (the SDK, pipecat
and LiveKit do), and those events are checked against the fields our protocol declares for
them instead. Beta event names (``OpenAI-Beta: realtime=v1``) are not GA events and are not
checked here.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from typing import Any

from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, ValidationError

from voice.protocol import ServerEvent
from voice.protocol.duplex import (
    BackchannelHeard,
    OutputAudioDuck,
    OutputAudioUnduck,
    ResponseResumed,
)

# Our extensions, by event type: dotted paths of keys the GA types do not have.
EXTENSION_KEYS: dict[str, tuple[str, ...]] = {
    "conversation.item.input_audio_transcription.completed": ("language",
                                                              "language_probability"),
    "conversation.item.input_audio_transcription.delta": ("confirmed", "tentative", "language"),
    "response.created": ("response.language",),
    "response.done": ("response.language", "response.latency"),
    "session.created": ("session.languages", "session.interruption"),
    "session.updated": ("session.languages", "session.interruption"),
}
# Keys OpenAI's GA server sends (its API reference shows them in ``session.created``) that the
# SDK's ``RealtimeSessionCreateRequest`` does not declare: GA, not ours.
GA_KEYS_NOT_IN_SDK: dict[str, tuple[str, ...]] = {
    "session.created": ("session.id", "session.object"),
    "session.updated": ("session.id", "session.object"),
}
# Our extension event types (docs/protocol.md, "Speech over a reply").
EXTENSION_EVENTS: dict[str, type[ServerEvent]] = {
    kind.type: kind for kind in (BackchannelHeard, OutputAudioDuck, OutputAudioUnduck,
                                 ResponseResumed)}
# Extension values: GA PCM is 24 kHz only; we also take 16 and 48 kHz.
EXTENSION_RATES = {16_000, 48_000}
RATE_PATHS = ("session.audio.input.format.rate", "session.audio.output.format.rate")


def _models_by_type() -> dict[str, type[BaseModel]]:
    union = typing.get_args(RealtimeServerEvent)[0]  # Annotated[Union[...], discriminator]
    models: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        for name in typing.get_args(model.model_fields["type"].annotation):
            models[name] = model
    return models


MODELS = _models_by_type()


def _pop(data: dict[str, Any], path: str) -> None:
    *parents, key = path.split(".")
    for step in parents:
        data = data.get(step)  # type: ignore[assignment]
        if not isinstance(data, dict):
            return
    data.pop(key, None)


def _get(data: dict[str, Any], path: str) -> Any:
    for step in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(step)  # type: ignore[assignment]
    return data


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, key = path.split(".")
    for step in parents:
        data = data[step]
    data[key] = value


def undeclared_keys(value: Any, path: str = "") -> list[str]:
    """Dotted paths of the keys a validated SDK model holds without declaring them."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}".lstrip(".") for key in value.model_extra or {}]
        for name in type(value).model_fields:
            found += undeclared_keys(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += undeclared_keys(item, f"{path}[{index}]")
    return found


def ga_problems(event: dict[str, Any]) -> list[str]:
    """What keeps ``event`` (a decoded server event) from being a GA Realtime server event,
    once our documented extensions are taken out; empty if nothing."""
    data = copy.deepcopy({key: value for key, value in event.items()
                          if not key.startswith("_")})  # tests.live adds "_received"
    kind = data.get("type")
    extension = EXTENSION_EVENTS.get(kind)  # type: ignore[arg-type]
    if extension is not None:
        declared = {"type", "event_id"} | {f.name for f in dataclasses.fields(extension)}
        return [f"{kind}: key {key} is not declared" for key in sorted(set(data) ^ declared)]
    model = MODELS.get(kind)  # type: ignore[arg-type]
    if model is None:
        return [f"{kind!r} is not a GA server event type"]
    for path in EXTENSION_KEYS.get(kind, ()) + GA_KEYS_NOT_IN_SDK.get(kind, ()):  # type: ignore[arg-type]
        _pop(data, path)
    for path in RATE_PATHS:
        if _get(data, path) in EXTENSION_RATES:
            _set(data, path, 24_000)
    try:
        validated = model.model_validate(data, strict=True)
    except ValidationError as error:
        return [f"{kind}: {error}"]
    return [f"{kind}: undeclared key {key}" for key in undeclared_keys(validated)]
