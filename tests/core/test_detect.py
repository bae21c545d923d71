"""bridgex.detect: lingua restricted to our languages, confidences that sum to 1, the zh/ja split of short
Han-only text, one detector per language set."""

from __future__ import annotations

import threading

import pytest
from bridgex.detect import HAN_AMBIGUOUS_CHARS, detect, detector, detector_built, is_han_only, unsupported
from bridgex.languages import PAPER_LANGUAGES

LANGS = tuple(PAPER_LANGUAGES)

CLEAR = {
    "All human beings are born free and equal in dignity and rights.": "en",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.": "de",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.": "fr",
    "Todos los seres humanos nacen libres e iguales en dignidad y derechos.": "es",
    "Todos os seres humanos nascem livres e iguais em dignidade e em direitos.": "pt",
    "Kaikki ihmiset syntyvät vapaina ja tasavertaisina arvoltaan ja oikeuksiltaan.": "fi",
    "Watu wote wamezaliwa huru, hadhi na haki zao ni sawa.": "sw",
    "人人生而自由，在尊严和权利上一律平等。": "zh",
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。": "ja",
    "يولد جميع الناس أحراراً متساوين في الكرامة والحقوق.": "ar",
    "כל בני האדם נולדו בני חורין ושווים בערכם ובזכויותיהם.": "he",
    "Straße": "de",
    "coração": "pt",
    "ありがとう": "ja",
}


@pytest.mark.parametrize("text", list(CLEAR))
def test_clear_cases_are_right_and_confident(text: str) -> None:
    ranked = detect(text, LANGS)
    assert ranked[0][0] == CLEAR[text], ranked[:3]
    assert ranked[0][1] > 0.8


@pytest.mark.parametrize("text", ["water", "casa", "a", "Alle Menschen sind frei", "学校", "ありがとう"])
def test_ranking_is_over_our_languages_and_sums_to_one(text: str) -> None:
    ranked = detect(text, LANGS)
    codes = [c for c, _ in ranked]
    assert sorted(codes) == sorted(LANGS)  # every one of the 15, nothing else (lingua knows 75)
    confs = [v for _, v in ranked]
    assert all(0.0 <= v <= 1.0 for v in confs)
    assert sum(confs) == pytest.approx(1.0, abs=1e-6)
    assert confs == sorted(confs, reverse=True)


def test_restricted_to_the_languages_asked_about() -> None:
    ranked = detect("Alle Menschen sind frei und gleich an Würde und Rechten geboren.", ["en", "fr", "it"])
    assert {c for c, _ in ranked} == {"en", "fr", "it"}  # German is not among them: the closest of these
    assert sum(v for _, v in ranked) == pytest.approx(1.0)


def test_ambiguous_words_are_not_confident() -> None:
    for word in ("casa", "a"):  # es/pt/it alike; one letter
        assert detect(word, LANGS)[0][1] < 0.5


def test_short_han_only_text_is_split_between_zh_and_ja() -> None:
    assert is_han_only("学校") and is_han_only("国際連合") and not is_han_only("ありがとう") and not is_han_only("123")
    for word in ("学", "学校", "国際連合"):
        top = dict(detect(word, LANGS)[:2])
        assert top == {"zh": 0.5, "ja": 0.5}, word  # lingua alone says zh 1.0
    longer = "人人生而自由在尊严和权利上"  # a Han-only sentence: Chinese (Japanese sentences carry kana)
    assert len(longer) > HAN_AMBIGUOUS_CHARS and detect(longer, LANGS)[0] == ("zh", 1.0)
    # without both zh and ja there is nothing to split
    assert detect("学校", ["zh", "en", "de"])[0] == ("zh", 1.0)


def test_nothing_to_detect_is_empty() -> None:
    for text in ("12345", "!!! ???", "Привет, мир", "안녕하세요", "\ud800"):  # no letters, or other scripts
        assert detect(text, LANGS) == [], text
    assert detect("\ud800Straße", LANGS)[0][0] == "de"  # a lone surrogate (from JSON) is no error


def test_unsupported_codes_are_named_and_left_out() -> None:
    assert unsupported(["en", "xx", "yue", "de"]) == ["xx", "yue"]
    assert unsupported(LANGS) == []  # lingua knows all 15 paper languages
    assert {c for c, _ in detect("Hallo Welt und guten Tag", ["en", "de", "xx"])} == {"en", "de"}
    with pytest.raises(ValueError, match="at least two"):
        detect("hello", ["en", "xx"])


def test_one_detector_per_language_set_even_under_a_race() -> None:
    langs = ("en", "fi", "hu")
    assert not detector_built(langs)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(detector(langs))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(d is got[0] for d in got)
    assert detector_built(("hu", "en", "fi")) and detector(("hu", "fi", "en")) is got[0]  # order does not matter
