"""bridgex.glossary (term matching, the answer check) and the glossary demonstrations the one prompt builder renders."""

from __future__ import annotations

from bridgex.demos import glossary_demos
from bridgex.glossary import Term, TermMatcher, contains, missing, normalize_term
from bridgex.prompts import Demo, sentence_prompt, word_prompt

ENTRIES = {
    "New York": "Nueva York",
    "York": "Iorque",
    "water": "eau",
    "C++": "C++",
    "human rights": "droits de l'homme",
    "שָׁלוֹם": "paix",
}


def test_exact_uses_the_projects_normalisation() -> None:
    m = TermMatcher(ENTRIES, "en")
    assert len(m) == len(ENTRIES)
    assert m.exact("Water") == Term("water", "eau")
    assert m.exact("  WATER \n") == Term("water", "eau")
    assert m.exact("new   york") == Term("New York", "Nueva York")  # whitespace runs are one space
    assert m.exact("שלום") == Term("שָׁלוֹם", "paix")  # niqqud stripped, as normalize_word does
    assert m.exact("waters") is None and m.exact("the water") is None
    assert normalize_term(" Human\tRIGHTS ") == "human rights"


def test_find_whole_words_longest_first_in_order() -> None:
    m = TermMatcher(ENTRIES, "en")
    found = m.find("Everyone in NEW\nYORK has Human Rights, and water; York too. C++ code.")
    assert [t.source for t in found] == ["New York", "human rights", "water", "York", "C++"]
    # "York" inside "New York" is not a match of its own; only the later standalone one is
    assert [t.source for t in m.find("New York, New York")] == ["New York"]
    # whole words only: inside another word is no match
    assert m.find("waterfall underwater Yorkshire") == []
    assert m.find("C++17") == [] and [t.source for t in m.find("(C++)")] == ["C++"]  # letters and digits bound
    assert TermMatcher({}, "en").find("anything") == []


def test_scripts_without_spaces_match_inside_runs() -> None:
    ja = TermMatcher({"東京": "Tokyo", "水": "water"}, "ja")
    assert [t.source for t in ja.find("私は東京で水を飲む")] == ["東京", "水"]
    spaced = TermMatcher({"東京": "Tokyo"}, "en")  # a spaced language would require boundaries
    assert spaced.find("私は東京で") == []
    assert contains("私は東京で", "東京", "ja") and not contains("私は東京で", "東京", "fr")


def test_missing_checks_whole_target_terms() -> None:
    terms = [Term("water", "eau"), Term("human rights", "droits de l'homme")]
    assert missing("Les Droits de l'Homme et l'eau.", terms, "fr") == []
    assert missing("Les droits de l'homme et l'eaux.", terms, "fr") == [terms[0]]  # an inflected form is missing
    assert missing("", terms, "fr") == terms


def test_glossary_demos_go_last_and_replace_a_conflicting_one() -> None:
    dictionary = [Demo("dog", "chien"), Demo("Water", "l'eau (boisson)"), Demo("cat", "chat")]
    terms = [Term("water", "eau"), Term("New York", "New York")]
    out = glossary_demos(dictionary, terms)
    assert out == [Demo("dog", "chien"), Demo("cat", "chat"), Demo("water", "eau"), Demo("New York", "New York")]
    assert glossary_demos(dictionary, []) == dictionary


def test_the_prompt_shows_the_term_pair_right_before_the_query() -> None:
    final = glossary_demos([Demo("dog", "chien")], [Term("water", "eau")])
    lines = sentence_prompt("The water is cold.", "en", "fr", demos=final).split("\n")
    assert lines == [
        'English:"dog"→Français:"chien"',
        'English:"water"→Français:"eau"',
        'English:"The water is cold."→Français:',
    ]
    # bridged chain: dictionary demonstrations keep their bridge word, the term line is direct (a glossary has none)
    final = glossary_demos([Demo("dog", "chien", bridge_text="Hund")], [Term("water", "eau")])
    lines = word_prompt("The water", "en", "fr", bridge="de", bridge_word="Das Wasser", demos=final).split("\n")
    assert lines == [
        'English:"dog"→Deutsch:"Hund"→Français:"chien"',
        'English:"water"→Français:"eau"',
        'English:"The water"→Deutsch:"Das Wasser"→Français:',
    ]
    # a term with chain delimiters cannot break out of its span
    final = glossary_demos([], [Term('a"→b', "c")])
    assert sentence_prompt("x", "en", "fr", demos=final).split("\n")[0] == 'English:"a\\"\\→b"→Français:"c"'
