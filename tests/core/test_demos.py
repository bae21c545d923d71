"""bridgex.demos: the DECISION demo_choice orders, the same words for every condition, served as recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bridgex.demos import clear_cache, ordered_words, word_demos


def _data(root: Path) -> str:
    rows = {
        ("id", "ja"): [
            "yang\t彼の地\tpivot-en",
            "air\tおしっこ\tpivot-en",
            "air\t水\tcldr:test",
            "rumah\t家\tfreedict:x",
        ],
        ("id", "en"): ["yang\tthat\tfreedict:y", "air\twater\tfreedict:y", "rumah\thouse\tfreedict:y"],
        ("id", "de"): ["air\tWasser\tpivot-en", "rumah\tHaus\tpivot-en"],
    }
    for (s, t), lines in rows.items():
        d = root / "dict" / f"{s}-{t}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "all.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (d / "probe.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (d / "eval.tsv").write_text("", encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps({"params": {"seed": 0, "eval_fraction": 0.5, "dev_fraction": 0}}))
    clear_cache()
    return str(root)


def test_direct_prefers_entries_that_are_not_pivot_composed(tmp_path: Path) -> None:
    root = _data(tmp_path)
    direct = ordered_words(root, "id", "ja", "direct")
    assert set(direct[:2]) == {"air", "rumah"} and direct[2] == "yang"  # yang has only a pivot entry
    _, demos = word_demos(root, "id", "ja", None, 3, "", words=direct, choice="direct")
    assert {d.source_text: d.target_text for d in demos}["air"] == "水"  # the CLDR entry, not the pivot one
    _, demos = word_demos(root, "id", "ja", None, 3, "", choice="frequent")
    assert {d.source_text: d.target_text for d in demos}["air"] == "おしっこ"


def test_kept_words_come_first_and_unknown_ones_are_ignored(tmp_path: Path) -> None:
    root = _data(tmp_path)
    got = ordered_words(root, "id", "ja", "kept", kept=["rumah", "nope"])
    assert got[0] == "rumah" and "nope" not in got and sorted(got) == ["air", "rumah", "yang"]
    with pytest.raises(ValueError, match="demo_choice"):
        ordered_words(root, "id", "ja", "best")


def test_a_bridged_chain_shows_the_direct_words_its_dictionary_has(tmp_path: Path) -> None:
    root = _data(tmp_path)
    _, direct = word_demos(root, "id", "ja", None, 3, "")
    s1, via_de = word_demos(root, "id", "ja", "de", 3, "")
    assert len(direct) == 3 and "yang" in {d.source_text for d in direct}
    # de lacks "yang": the chain shows the others, both steps the same words, with the bridge text
    assert [d.source_text for d in via_de] == [d.source_text for d in direct if d.source_text != "yang"]
    assert [d.source_text for d in s1] == [d.source_text for d in via_de] and all(d.bridge_text for d in via_de)
    # the query word is never a demonstration; recorded words are served in their order
    _, rec = word_demos(root, "id", "ja", "en", 3, "air", words=["rumah", "air", "yang"])
    assert [d.source_text for d in rec] == ["rumah", "yang"]
    _, gone = word_demos(root, "id", "ja", None, 3, "", words=["vanished", "rumah"])
    assert gone[0].source_text == "rumah"  # a recorded word no longer in the dictionary is skipped


def test_recorded_words_first_then_the_usual_order_for_a_larger_k(tmp_path: Path) -> None:
    root = _data(tmp_path)
    usual = [d.source_text for d in word_demos(root, "id", "ja", None, 3, "")[1]]
    _, got = word_demos(root, "id", "ja", None, 3, "", words=["yang"])
    assert [d.source_text for d in got] == ["yang", *[w for w in usual if w != "yang"]][:3]
    _, none_recorded = word_demos(root, "id", "ja", None, 2, "", words=[])  # an analysis at k_shot 0
    assert len(none_recorded) == 2


def _old_order(root: str, s: str, t: str, choice: str) -> list[tuple[str, str]]:
    """The order as it was computed before it was kept on disk (the whole dictionary, wordfreq), written out."""
    from bridgex.data.layout import DataLayout
    from bridgex.frequency import frequency_order

    d = DataLayout(root).dictionary(s, t, "probe")
    tr = {w: ts for w, ts in d.translations().items() if ts}
    order = frequency_order(tr, s, t, salt="demos")
    if choice != "direct":
        return [(w, tr[w][0]) for w in order]
    direct: dict[str, str] = {}
    for p in d.pairs:
        if not (p.origin or d.origin or "").startswith("pivot") and p.source not in direct:
            direct[p.source] = p.target
    return [(w, direct[w]) for w in order if w in direct] + [(w, tr[w][0]) for w in order if w not in direct]


def test_the_order_kept_on_disk_is_the_computed_one_and_is_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bridgex.demos as demos

    root = _data(tmp_path)
    lines = [f"kata{i}\tword{i}\t{'pivot-en' if i % 3 else 'freedict:x'}" for i in range(300)]
    lines += ["air\tWasser\tpivot-en", "yang\tder\tfreedict:y", "air\tNass\tfreedict:y"]
    d = tmp_path / "dict" / "id-de"
    (d / "probe.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pairs = [("id", "ja"), ("id", "en"), ("id", "de")]
    want = {(s, t, c): _old_order(root, s, t, c) for s, t in pairs for c in ("frequent", "direct")}
    demos.prime(root, [*pairs, ("id", "sw")])  # a pair without a dictionary is skipped
    for s, t in pairs:  # and their reverses, which read the same dictionary files
        assert demos.order_path(root, s, t).is_file() and demos.order_path(root, t, s).is_file()
    assert not demos.order_path(root, "id", "sw").exists()
    before = {p.name: p.stat().st_mtime_ns for p in demos.order_path(root, "id", "ja").parent.iterdir()}
    demos.prime(root, pairs)  # up to date: nothing is rewritten
    assert {p.name: p.stat().st_mtime_ns for p in demos.order_path(root, "id", "ja").parent.iterdir()} == before

    # another process reads the files: no dictionary parse and no word frequencies, the same order and words
    clear_cache()

    def no(*_: object, **__: object) -> None:
        raise AssertionError("computed, not read from the order file")

    monkeypatch.setattr(demos, "_compute_order", no)
    for (s, t, c), order in want.items():
        assert list(demos.demo_words(root, s, t, c)) == order, (s, t, c)
    assert ordered_words(root, "id", "de", "direct")[:2] == [w for w, _ in want["id", "de", "direct"][:2]]
    monkeypatch.undo()

    # the dictionary changes: the file is stale (its stamp), the order is computed again and rewritten
    (d / "probe.tsv").write_text("rumah\tHaus\tfreedict:y\n", encoding="utf-8")
    clear_cache()
    assert demos.demo_words(root, "id", "de") == (("rumah", "Haus"),)
    assert demos.order_path(root, "id", "de").read_text(encoding="utf-8").splitlines()[1:] == ["rumah\tHaus\tHaus"]


def test_an_unwritable_cache_still_gives_demonstrations(tmp_path: Path) -> None:
    import bridgex.demos as demos

    root = _data(tmp_path)
    (tmp_path / "cache").write_text("not a folder")  # the order file cannot be written (as on a read-only volume)
    _, got = word_demos(root, "id", "ja", None, 3, "")
    assert [d.source_text for d in got] == [w for w, _ in _old_order(root, "id", "ja", "frequent")][:3]
    assert not demos.order_path(root, "id", "ja").exists()
