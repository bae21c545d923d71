"""bridgex.generation.chain: the served X-ICL chain reports the bridge it actually used (scripted completions)."""

from __future__ import annotations

from bridgex.generation.chain import translate_chain
from bridgex.prompts import Demo


def _scripted(answers: dict[str, str], asked: list[str]):
    async def complete(prompt: str, max_tokens: int) -> str:
        asked.append(prompt)
        last = prompt.splitlines()[-1]
        return next((v for k, v in answers.items() if last.endswith(k)), "")

    return complete


async def test_bridged_chain_uses_the_bridge_word() -> None:
    asked: list[str] = []
    out = await translate_chain(
        _scripted({"Deutsch:": ' "Wasser"', '"Wasser"→Français:': ' "eau"'}, asked),
        "word",
        "water",
        "en",
        "fr",
        "de",
        max_tokens=8,
    )
    assert out.bridge == "de" and out.bridge_text == "Wasser" and out.answer == "eau" and not out.warnings
    assert asked == ['English:"water"→Deutsch:', 'English:"water"→Deutsch:"Wasser"→Français:']


async def test_empty_bridge_step_falls_back_to_direct_and_says_so() -> None:
    asked: list[str] = []
    demos = [Demo("cat", "chat", bridge_text="Katze")]
    out = await translate_chain(
        _scripted({"Deutsch:": " \n", "Français:": ' "eau"'}, asked),
        "word",
        "water",
        "en",
        "fr",
        "de",
        max_tokens=8,
        demos_target=demos,
    )
    assert out.bridge is None and out.bridge_text is None and out.answer == "eau"
    assert out.warnings and "produced no text" in out.warnings[0]
    # the direct prompt's demonstrations lose their bridge part too
    assert asked[-1] == 'English:"cat"→Français:"chat"\nEnglish:"water"→Français:'


async def test_direct_chain_is_one_generation() -> None:
    asked: list[str] = []
    out = await translate_chain(
        _scripted({"Français:": ' "eau"'}, asked), "word", "water", "en", "fr", None, max_tokens=8
    )
    assert out.bridge is None and out.answer == "eau" and len(asked) == 1
