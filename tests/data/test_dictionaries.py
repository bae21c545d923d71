"""Dictionary readers on files the tests write, CLDR and CC-CEDICT for real, composition and splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from bridgex.dictionaries import (
    Dictionary,
    WordPair,
    cldr_dictionary,
    compose,
    decode_dictd_number,
    group_by_source,
    is_single_word,
    merge,
    read_cedict,
    read_freedict,
    read_muse,
    read_tsv,
    split_by_source,
    split_parts,
    write_tsv,
)

from tests.data.fixtures import b64_number, write_dictd


def pairs(d: Dictionary) -> list[tuple[str, str]]:
    return [(p.source, p.target) for p in d.pairs]


def test_muse_space_and_tab_dedup_and_single_words(tmp_path: Path) -> None:
    f = tmp_path / "en-fr.txt"
    f.write_text("cat chat\ndog\tchien\ncat chat\nice cream glace\n\nhouse maison\nR2D2 robot\n", encoding="utf-8")
    d = read_muse(f, "en", "fr")
    assert (d.source_lang, d.target_lang) == ("en", "fr")
    assert pairs(d) == [("cat", "chat"), ("dog", "chien"), ("house", "maison")]
    assert d.counts_by_origin() == {"muse": 3}


def test_is_single_word() -> None:
    for w in ("maison", "Straße", "שָׁלוֹם", "كتاب", "猫", "コンピューター", "e-mail", "l'eau"):
        assert is_single_word(w), w
    for w in ("ice cream", "sth.", "R2D2", "", "-", "abc-", "(n)"):
        assert not is_single_word(w), w


@pytest.mark.parametrize("n", [0, 1, 63, 64, 4095, 4096, 123456789])
def test_dictd_numbers(n: int) -> None:
    assert decode_dictd_number(b64_number(n)) == n


def test_freedict_dictd_reader(tmp_path: Path) -> None:
    entries = [
        "cat /kæt/ <n>\nchat, matou\n",
        "ice cream /aɪs kɹiːm/ <n>\nglace\n",  # multi-word headword: dropped
        "run /ɹʌn/ <v>\n1. courir\nto move quickly on foot\n2. [comp.] exécuter, faire tourner\n see: {runner}\n",
        "house <n>\n(noun (common))\nmaison\n",  # grammar-only line first, translation follows
        "dog /dɒɡ/\nchien\n   Synonyms: {toutou}\n",
    ]
    index = write_dictd(tmp_path, "eng-fra", entries, pad=5000)
    d = read_freedict(index)
    assert (d.source_lang, d.target_lang) == ("en", "fr")
    assert pairs(d) == [
        ("cat", "chat"),
        ("cat", "matou"),
        ("run", "courir"),
        ("run", "exécuter"),
        ("house", "maison"),
        ("dog", "chien"),
    ]
    assert set(d.counts_by_origin()) == {"freedict:eng-fra"}


def test_freedict_script_check_drops_glosses(tmp_path: Path) -> None:
    index = write_dictd(tmp_path, "eng-jpn", ["water <n>\n水, mizu\ndrink\n", "cat\n猫\n"])
    assert pairs(read_freedict(index)) == [("water", "水"), ("cat", "猫")]


def test_cedict_entries_filtering() -> None:
    entries = [
        {"simplified": "吃", "traditional": "吃", "pinyin": "chi1", "definitions": ["to eat", "to consume"]},
        {"simplified": "李", "traditional": "李", "pinyin": "Li3", "definitions": ["surname Li"]},
        {
            "simplified": "个",
            "traditional": "個",
            "pinyin": "ge4",
            "definitions": ["variant of 箇", "CL:個|个"],
        },
        {
            "simplified": "猫",
            "traditional": "貓",
            "pinyin": "mao1",
            "definitions": ["cat (CL:隻|只)", "big cat"],
        },
    ]
    assert pairs(read_cedict(entries=entries)) == [("吃", "eat"), ("吃", "consume"), ("猫", "cat")]


def test_group_by_source_keeps_first_seen_order_and_distinct_targets() -> None:
    d = Dictionary(
        "en",
        "fr",
        [WordPair("dog", "chien"), WordPair("cat", "chat"), WordPair("dog", "chien"), WordPair("dog", "clebs")],
    )
    assert group_by_source(d.pairs) == {"dog": ["chien", "clebs"], "cat": ["chat"]}
    assert list(group_by_source(d.pairs)) == ["dog", "cat"]
    assert d.translations() == group_by_source(d.pairs)
    # (source, target) tuples too; strip=True trims and skips pairs with an empty side
    raw = [(" dog ", "chien"), ("cat", " "), ("", "x"), ("dog", "chien ")]
    assert group_by_source(raw) == {" dog ": ["chien"], "cat": [" "], "": ["x"], "dog": ["chien "]}
    assert group_by_source(raw, strip=True) == {"dog": ["chien"]}


def test_cedict_real_package() -> None:
    d = read_cedict()
    assert len(d) > 20_000
    tr = d.translations()
    assert "cat" in tr["猫"]
    assert all(p.source and " " not in p.target for p in d.pairs[:1000])


def test_cldr_real_babel() -> None:
    d = cldr_dictionary("en", "fr")
    got = set(pairs(d))
    assert ("January", "janvier") in got
    assert ("Monday", "lundi") in got
    assert ("Germany", "Allemagne") in got
    tl = cldr_dictionary("id", "tl")  # the only source for Tagalog
    assert "Enero" in {p.target for p in tl} and ("Senin", "Lunes") in set(pairs(tl))
    # Filipino CLDR leaves most names in English: those are not Tagalog translations
    english = {p.target for p in cldr_dictionary("id", "en")}
    assert not {p.target for p in tl} & english
    assert len(cldr_dictionary("id", "tl", drop_english_fallback=False)) > 2 * len(tl)
    he = cldr_dictionary("zh", "he")
    assert len(he) > 100 and all(p.origin.startswith("cldr:") for p in he)


def test_compose_through_pivot() -> None:
    a_b = Dictionary(
        "sw",
        "en",
        [
            WordPair("paka", "cat"),
            WordPair("maji", "water"),
            WordPair("maji", "Water"),
            WordPair("nyumba", "house"),
        ],
        "x",
    )
    b_c = Dictionary(
        "en",
        "fi",
        [
            WordPair("cat", "kissa"),
            WordPair("water", "vesi"),
            WordPair("water", "vedet"),
            WordPair("water", "aalto"),
            WordPair("wave", "aalto"),
        ],
        "y",
    )
    c = compose(a_b, b_c, max_targets=2)
    assert (c.source_lang, c.target_lang) == ("sw", "fi")
    assert pairs(c) == [("paka", "kissa"), ("maji", "aalto"), ("maji", "vedet")]
    assert c.counts_by_origin() == {"pivot-en": 3}
    with pytest.raises(ValueError, match="cannot compose"):
        compose(b_c, b_c)


def test_merge_keeps_first_origin_and_counts() -> None:
    a = Dictionary("en", "fr", [WordPair("cat", "chat", "a"), WordPair("dog", "chien", "a")], "a")
    b = Dictionary("en", "fr", [WordPair("cat", "chat", "b"), WordPair("cow", "vache", "b")], "b")
    m = merge(a, b)
    assert pairs(m) == [("cat", "chat"), ("dog", "chien"), ("cow", "vache")]
    assert m.counts_by_origin() == {"a": 2, "b": 1}
    with pytest.raises(ValueError):
        merge(a, a.reversed())


def test_split_disjoint_deterministic_and_complete() -> None:
    ps = [WordPair(f"w{i}", f"t{i}{k}") for i in range(200) for k in range(1 + i % 3)]
    d = Dictionary("en", "fr", ps, "x")
    probe, held = split_by_source(d, 0.3, seed=1)
    assert not set(probe.sources) & set(held.sources)
    assert len(probe) + len(held) == len(d)
    assert len(held.sources) == 60
    again = split_by_source(d, 0.3, seed=1)
    assert pairs(again[0]) == pairs(probe) and pairs(again[1]) == pairs(held)
    other = split_by_source(d, 0.3, seed=2)
    assert set(other[1].sources) != set(held.sources)
    with pytest.raises(ValueError):
        split_by_source(d, 1.5)


def test_split_parts_three_way_and_eval_unchanged() -> None:
    ps = [WordPair(f"w{i}", f"t{i}{k}") for i in range(200) for k in range(1 + i % 3)]
    d = Dictionary("en", "fr", ps, "x")
    probe, dev, held = split_parts(d, 0.3, 0.25, seed=1)
    s_probe, s_dev, s_eval = set(probe.sources), set(dev.sources), set(held.sources)
    assert not (s_probe & s_dev or s_probe & s_eval or s_dev & s_eval)
    assert len(probe) + len(dev) + len(held) == len(d)
    assert (len(s_eval), len(s_dev)) == (60, 35)  # 0.3 of 200; 0.25 of the other 140
    # eval is exactly split_by_source's, so eval results stay comparable with data from before dev
    assert pairs(held) == pairs(split_by_source(d, 0.3, seed=1)[1])
    # dev depends only on the non-eval words: re-splitting probe+dev alone (as DataLayout does) agrees
    rest = Dictionary("en", "fr", [p for p in d.pairs if p.source not in s_eval], "x")
    again = split_parts(rest, 0.0, 0.25, seed=1)
    assert (pairs(again[0]), pairs(again[1]), pairs(again[2])) == (pairs(probe), pairs(dev), [])
    assert set(split_parts(d, 0.3, 0.25, seed=2)[1].sources) != s_dev
    assert split_parts(d, 0.3, 0.0, seed=1)[1].pairs == []
    with pytest.raises(ValueError, match="dev_fraction"):
        split_parts(d, 0.3, -0.1)


def test_tsv_roundtrip(tmp_path: Path) -> None:
    d = Dictionary("en", "fr", [WordPair("cat", "chat", "o1"), WordPair("dog", "chien", "o2")], "x")
    write_tsv(d, tmp_path / "d.tsv")
    back = read_tsv(tmp_path / "d.tsv", "en", "fr")
    assert pairs(back) == pairs(d) and back.counts_by_origin() == {"o1": 1, "o2": 1}
