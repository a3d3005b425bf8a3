"""The system prompt: the assistant's name and persona, the client's instructions, and rules
written in the user's language."""

from __future__ import annotations

import re

import pytest

from llm.prompts import DEFAULT_ASSISTANT_NAME, Assistant, system_prompt

LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pt", "pl"]


@pytest.mark.parametrize("language", [*LANGUAGES, "sv", None])
def test_the_configured_name_is_the_one_the_model_is_given(language: str | None) -> None:
    prompt = system_prompt(language, assistant=Assistant(name="Hal"))
    assert "Hal" in prompt and DEFAULT_ASSISTANT_NAME not in prompt
    assert DEFAULT_ASSISTANT_NAME in system_prompt(language)


@pytest.mark.parametrize("language", [*LANGUAGES, "sv", None])
def test_the_prompt_names_no_company_or_model_as_the_maker(language: str | None) -> None:
    prompt = system_prompt(language, "Be kind.", Assistant(persona="You help at a library."))
    assert not re.search(r"openai|alibaba|qwen|chatgpt|gpt|anthropic|google|microsoft",
                         prompt, re.IGNORECASE), prompt


@pytest.mark.parametrize(("language", "rule"), [
    ("en", "Always answer in English"), ("de", "Antworte immer auf Deutsch"),
    ("fr", "Réponds toujours en français"), ("es", "Responde siempre en español"),
    ("it", "Rispondi sempre in italiano"), ("nl", "Antwoord altijd in het Nederlands"),
    ("pt", "Responda sempre em português"), ("pl", "Odpowiadaj po polsku"),
    ("sv", "Always answer in Swedish"), ("xx", "Always answer in xx"),
    (None, "Always answer in the language the person speaks"),
])
def test_the_rules_say_which_language_to_answer_in(language: str | None, rule: str) -> None:
    assert rule in system_prompt(language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_prompt_is_written_in_the_user_s_language(language: str) -> None:
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE)
    identifier.set_languages(LANGUAGES)
    assert identifier.classify(system_prompt(language))[0] == language


def test_persona_and_instructions_come_after_the_identity_and_before_the_rules() -> None:
    prompt = system_prompt("de", "  Sprich langsam.  ",
                           Assistant(name="Hal", persona="Du arbeitest bei ACME."))
    paragraphs = prompt.split("\n\n")
    assert len(paragraphs) == 4
    assert paragraphs[0].startswith("Du heißt Hal.")
    assert paragraphs[1:3] == ["Du arbeitest bei ACME.", "Sprich langsam."]
    assert paragraphs[3].startswith("Antworte immer auf Deutsch")


def test_the_rules_ask_for_short_plain_spoken_replies_to_the_person() -> None:
    prompt = system_prompt("en")
    assert "speaking directly to the person" in prompt
    assert "one to three short sentences" in prompt and "without lists or markdown" in prompt
    assert "the user" not in prompt.lower()  # it invites narration about "the user"


def test_calls_and_results_are_folded_into_the_users_turn_in_order() -> None:
    from llm.chat import Message
    from llm.prompts import fold_tool_results
    from llm.tools import ToolCall

    light = ToolCall("set_light", {"room": "Küche", "on": True})
    timer = ToolCall("set_timer", {"minutes": 5})
    messages = [Message("system", "S"), Message("user", "Licht an, Timer 5 Minuten"),
                Message("assistant", "Gern.", (light, timer)), Message("tool", "ok"),
                Message("tool", '{"started": true}'), Message("assistant", "Erledigt."),
                Message("user", "Danke")]
    folded = fold_tool_results(messages)
    assert folded == [
        Message("system", "S"),
        Message("user", 'Licht an, Timer 5 Minuten\n\n(The app ran set_light(room="Küche", '
                'on=true) and got: ok. The app ran set_timer(minutes=5) and got: '
                '{"started": true}.)'),
        Message("assistant", "Gern."), Message("assistant", "Erledigt."),
        Message("user", "Danke")]


def test_a_conversation_that_ends_with_results_asks_for_the_outcome() -> None:
    from llm.chat import Message
    from llm.prompts import fold_tool_results
    from llm.tools import ToolCall

    folded = fold_tool_results([Message("user", "Weather?"), Message(
        "assistant", "", (ToolCall("get_weather", {}),)), Message("tool", "sunny")])
    assert folded == [Message("user", "Weather?\n\n(The app ran get_weather() and got: sunny. "
                                      "Tell me the outcome in one short sentence.)")]
