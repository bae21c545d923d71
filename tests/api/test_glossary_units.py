"""Glossaries without the generation stack: the create checks, the translate-side check of an answer, and the
routes in process against a real Redis (the per-key limit under concurrent POSTs, ownership, Redis down)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from services.api.core.config import ApiSettings
from services.api.core.errors import ApiError
from services.api.main import create_app
from services.api.schemas.glossaries import Glossary, GlossaryCreate
from services.api.services import glossaries
from services.common import redis_keys
from tests.support import RedisServer

KEYS = {"g-one": ["translate"], "g-two": ["translate"], "g-admin": ["admin"]}
ONE, TWO, ADMIN = ({"Authorization": f"Bearer {k}"} for k in KEYS)


def new(entries: dict[str, str], source: str = "en", target: str = "fr", name: str = "g") -> GlossaryCreate:
    return GlossaryCreate(name=name, source=source, target=target, entries=entries)


def refused(req: GlossaryCreate, settings: ApiSettings) -> ApiError:
    with pytest.raises(ApiError) as e:
        glossaries.check_new(req, settings)
    assert e.value.status == 422
    return e.value


def test_create_checks_say_what_to_fix() -> None:
    s = ApiSettings(glossary_max_entries=3, glossary_max_term_chars=10)
    ok = glossaries.check_new(new({" water ": " eau", "New  York": "New York"}, "eng", "fra", " mine "), s)
    assert (ok.name, ok.source, ok.target) == ("mine", "en", "fr")
    assert ok.entries == {"water": "eau", "New  York": "New York"}
    e = refused(new({f"w{i}": "x" for i in range(4)}), s)
    assert "4 entries; the limit is 3" in e.message and "BRIDGEX_GLOSSARY_MAX_ENTRIES" in e.message
    e = refused(new({"a" * 11: "x"}), s)
    assert "11 characters; the limit is 10" in e.message and "BRIDGEX_GLOSSARY_MAX_TERM_CHARS" in e.message
    e = refused(new({"water": "e" * 11}), s)
    assert "the translation of 'water'" in e.message and "limit is 10" in e.message
    e = refused(new({"Water": "eau", "WATER ": "l'eau"}), s)
    assert "same term" in e.message and "'Water'" in e.message
    assert "empty" in refused(new({"  ": "x"}), s).message
    assert "empty" in refused(new({"water": '"→'}), s).message  # only delimiters
    assert "one line" in refused(new({"wa\nter": "x"}), s).message
    assert "invalid Unicode" in refused(new({"\ud800": "x"}), s).message  # could not be stored as UTF-8 JSON
    assert "invalid Unicode" in refused(new({"water": "x\ud800"}), s).message
    assert "source" in refused(new({"a": "b"}, source="xx-not-a-lang"), s).message
    assert "same language" in refused(new({"a": "b"}, "en", "eng"), s).message
    assert refused(new({"a": "b"}, name="\x00"), s).details == {"field": "name"}


def test_enforcement_check_lists_missing_terms_with_warnings() -> None:
    g = Glossary(
        id="0" * 32,
        name="g",
        source="en",
        target="fr",
        entries={"water": "eau", "fire": "feu"},
        entry_count=2,
        created_at=0.0,
        owner="k",
    )
    found = glossaries.TermMatcher(g.entries, "en").find("water and fire")
    enf = glossaries.Enforcement(g, terms=found[:1], not_enforced=found[1:])
    warnings: list[str] = []
    use = enf.check("de l'eau", warnings)
    assert (use.applied, use.missing, use.not_enforced, use.direct) == (["water"], [], ["fire"], False)
    assert len(warnings) == 1 and "not_enforced" in warnings[0]
    warnings = []
    use = enf.check("des eaux", warnings)
    assert use.missing == ["water"] and "'eau'" in warnings[0] and "not in the translation" in warnings[0]


@pytest.fixture
def app_settings(redis_url: str) -> ApiSettings:
    return ApiSettings(redis_url=redis_url, api_keys=KEYS, glossary_max_per_key=2)


def client(settings: ApiSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://gw")


BODY = {"name": "g", "source": "en", "target": "fr", "entries": {"water": "eau"}}


async def test_per_key_limit_holds_under_concurrent_posts(app_settings: ApiSettings, redis_url: str) -> None:
    async with client(app_settings) as c:
        rs = await asyncio.gather(*(c.post("/glossaries", json=BODY, headers=ONE) for _ in range(8)))
        codes = sorted(r.status_code for r in rs)
        assert codes == [201, 201] + [409] * 6, codes
        refused = next(r for r in rs if r.status_code == 409).json()
        assert refused["error"] == "glossary_limit" and "BRIDGEX_GLOSSARY_MAX_PER_KEY" in refused["message"]
        assert (await c.post("/glossaries", json=BODY, headers=TWO)).status_code == 201  # per key, not global
        mine = (await c.get("/glossaries", headers=ONE)).json()["glossaries"]
        assert len(mine) == 2 and {g["entry_count"] for g in mine} == {1} and "entries" not in mine[0]
        # deleting one frees a place
        assert (await c.delete(f"/glossaries/{mine[0]['id']}", headers=ONE)).status_code == 204
        assert (await c.post("/glossaries", json=BODY, headers=ONE)).status_code == 201
        assert len((await c.get("/glossaries", headers=ADMIN)).json()["glossaries"]) == 3
    import redis

    r = redis.Redis.from_url(redis_url)
    stored = json.loads(r.get(redis_keys.glossary(mine[1]["id"])))  # JSON, as the schema says
    assert stored["entries"] == {"water": "eau"} and stored["owner"] == mine[1]["owner"]
    assert r.scard(redis_keys.GLOSSARIES_INDEX) == 3


async def test_malformed_and_unknown_ids_are_the_same_404(app_settings: ApiSettings) -> None:
    async with client(app_settings) as c:
        made = (await c.post("/glossaries", json=BODY, headers=ONE)).json()
        for gid in ("0" * 32, "not-an-id", "A" * 32, made["id"]):
            r = await c.get(f"/glossaries/{gid}", headers=TWO)
            assert r.status_code == 404 and r.json()["error"] == "glossary_not_found", gid
        assert (await c.get(f"/glossaries/{made['id']}", headers=ONE)).json()["entries"] == {"water": "eau"}


async def test_redis_down_is_503() -> None:
    server = RedisServer().start()
    settings = ApiSettings(redis_url=server.url, api_keys=KEYS)
    server.stop()
    async with client(settings) as c:
        r = await c.post("/glossaries", json=BODY, headers=ONE)
        assert r.status_code == 503 and "glossary storage" in r.json()["message"]


def test_measure_script_dry_run_builds_items_from_the_data_dir(tmp_path: Path) -> None:
    from bridgex.glossary import contains

    import scripts.measure_glossary as measure
    from tests.api.conftest import write_data_dir

    data = write_data_dir(tmp_path / "data", pairs=(("en", "fr"),))
    out = tmp_path / "plan.json"
    report = measure.main(["--dry-run", "--pairs", "en-fr", "--n", "4", "--data-dir", str(data), "--out", str(out)])
    assert json.loads(out.read_text())["dry_run"] is True
    (plan,) = report["pairs"]
    assert len(plan["items"]) == 4 and plan["entries"]
    for item in plan["items"]:
        assert contains(item["text"], item["focus"], "en")  # the focus term is in its sentence
        assert item["focus"] in [t["source"] for t in item["terms"]]
    for word, gloss in plan["entries"].items():  # the dictionary's translation (write_data_dir: w+en -> w+fr)
        assert gloss == word.removesuffix("en") + "fr"
    with pytest.raises(SystemExit, match="en-sw"):
        measure.main(["--dry-run", "--pairs", "en-sw", "--data-dir", str(data), "--out", str(out)])
