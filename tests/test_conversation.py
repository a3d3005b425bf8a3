"""The conversation: items kept, what was heard of a reply, bounds, the prompt it makes."""

from __future__ import annotations

import pytest

from llm.chat import Message
from voice.conversation import Conversation, Item, heard_text
from voice.protocol import ProtocolError

PIECES = [("One two three four.", 190.0), ("Five six seven eight.", 210.0)]


@pytest.mark.parametrize(("heard_ms", "text"), [
    (0, ""), (100, "One two"), (190, "One two three four."),
    (295, "One two three four. Five six"), (10_000, "One two three four. Five six seven eight."),
])
def test_heard_text_keeps_the_words_played_in_proportion(heard_ms: float, text: str) -> None:
    assert heard_text(PIECES, heard_ms) == text


def test_a_truncated_reply_keeps_what_was_heard_and_the_prompt_shows_only_that() -> None:
    conversation = Conversation()
    conversation.add(Item("u1", "user", "Count."))
    conversation.add(Item("a1", "assistant", "One two three four. Five six seven eight.",
                          audio=True, pieces=list(PIECES)))
    conversation.truncate("a1", 190, "e1")
    assert conversation.prompt("Be brief.") == [
        Message("system", "Be brief."), Message("user", "Count."),
        Message("assistant", "One two three four.")]
    assert conversation.find("a1").status == "incomplete"  # type: ignore[union-attr]


@pytest.mark.parametrize(("item_id", "end_ms", "code"), [
    ("nope", 0, "item_not_found"), ("u1", 0, "invalid_item"), ("a1", 5_000, "invalid_value")])
def test_truncating_what_cannot_be_truncated_says_why(item_id: str, end_ms: int,
                                                      code: str) -> None:
    conversation = Conversation()
    conversation.add(Item("u1", "user", "Count."))
    conversation.add(Item("a1", "assistant", "x", audio=True, pieces=list(PIECES)))
    with pytest.raises(ProtocolError) as refused:
        conversation.truncate(item_id, end_ms, "e9")
    assert (refused.value.code, refused.value.event_id) == (code, "e9")


def test_an_empty_unheard_reply_stays_but_never_reaches_the_prompt() -> None:
    conversation = Conversation()
    conversation.add(Item("u1", "user", "Hi."))
    conversation.add(Item("a1", "assistant", "", audio=True, status="incomplete"))
    assert [i.item_id for i in conversation] == ["u1", "a1"]
    assert conversation.prompt("S") == [Message("system", "S"), Message("user", "Hi.")]


def test_the_reply_being_written_is_left_out_of_its_own_prompt() -> None:
    conversation = Conversation()
    conversation.add(Item("u1", "user", "Hi."))
    conversation.add(Item("a1", "assistant", "Hel", status="in_progress"))
    assert conversation.prompt("S", exclude="a1") == [Message("system", "S"),
                                                       Message("user", "Hi.")]


def test_the_oldest_items_are_forgotten_beyond_the_count_and_the_character_budget() -> None:
    conversation = Conversation(max_items=3, max_chars=25)
    for index in range(5):
        previous = conversation.add(Item(f"i{index}", "user", "ten chars!"))
        assert previous == (f"i{index - 1}" if index else None)
    assert [i.item_id for i in conversation] == ["i3", "i4"]  # 3 items, then 25 characters
    conversation.add(Item("big", "user", "x" * 100))
    assert [i.item_id for i in conversation] == ["big"]  # the newest always stays
