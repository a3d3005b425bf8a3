"""Shared by the protocol tests: parse literal JSON and return the event, config or error."""

from __future__ import annotations

import pytest

from voice.protocol import (
    ProtocolError,
    SessionConfig,
    SessionUpdate,
    apply_session_update,
    parse_client_event,
)


def parse_error(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_event(text)
    return caught.value


def update(text: str, config: SessionConfig | None = None) -> SessionConfig:
    """Parse a literal session.update event and apply it, as the session does."""
    event = parse_client_event(text)
    assert isinstance(event, SessionUpdate)
    return apply_session_update(config or SessionConfig(), event.session, event.event_id)


def update_error(text: str, config: SessionConfig | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        update(text, config)
    return caught.value
