"""Glossaries over HTTP against the real stack (uvicorn, redis-server, Celery, the vLLM worker on the tiny random
model): CRUD with ownership, limits, the pair check, a word that is a term answered without generation, terms in
a text enforced as demonstrations (the translation equals the worker's answer to the prompt with the term pairs,
recomputed here) and checked, and the measurement script end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from bridgex.generation.client import SyncGenerationClient
from bridgex.glossary import contains
from bridgex.prompts import Demo, parse_sentence, parse_word, sentence_prompt, word_prompt

from tests.api.conftest import ADMIN, A, Stack, T

pytestmark = pytest.mark.integration

TERMS = {"Wateren": "EAU-GLOSSAIRE", "houseen": "maisonfr", "red en": "rouge-fr"}


def make(c: httpx.Client, headers: dict[str, str], entries: dict[str, str], s: str = "en", t: str = "fr") -> dict:
    r = c.post("/glossaries", json={"name": "test", "source": s, "target": t, "entries": entries}, headers=headers)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/glossaries/{r.json()['id']}"
    return r.json()


def translate(c: httpx.Client, headers: dict[str, str], **body: Any) -> httpx.Response:
    return c.post("/translate", json={"source": "en", "target": "fr", "bridge": "none", **body}, headers=headers)


def worker_requests(worker: str) -> float:
    """Requests the generation worker finished (vLLM's Prometheus counter)."""
    text = httpx.get(f"{worker}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def ids(c: httpx.Client, headers: dict[str, str]) -> set[str]:
    r = c.get("/glossaries", headers=headers)
    assert r.status_code == 200, r.text
    return {g["id"] for g in r.json()["glossaries"]}


def test_crud_with_ownership(stack: Stack) -> None:
    with stack.client() as c:
        g = make(c, T, {" Wateren ": "EAU-GLOSSAIRE", "houseen": "maisonfr"}, "eng", "fra")
        assert re.fullmatch(r"[0-9a-f]{32}", g["id"])
        assert (g["source"], g["target"], g["entry_count"]) == ("en", "fr", 2)
        assert g["entries"] == {"Wateren": "EAU-GLOSSAIRE", "houseen": "maisonfr"}  # stripped
        assert c.get(f"/glossaries/{g['id']}", headers=T).json() == g
        assert g["id"] in ids(c, T) and g["id"] not in ids(c, A)

        # another key: the same 404 as for an id that never existed, for reads, deletes and translations
        other = c.get(f"/glossaries/{g['id']}", headers=A)
        unknown = c.get(f"/glossaries/{'0' * 32}", headers=A)
        assert other.status_code == unknown.status_code == 404
        assert other.json()["error"] == unknown.json()["error"] == "glossary_not_found"
        assert other.json()["message"].replace(g["id"], "X") == unknown.json()["message"].replace("0" * 32, "X")
        assert c.delete(f"/glossaries/{g['id']}", headers=A).status_code == 404
        r = translate(c, A, text="Wateren", glossary_id=g["id"])
        assert r.status_code == 404 and r.json()["error"] == "glossary_not_found"

        # admin sees and may delete every glossary
        assert c.get(f"/glossaries/{g['id']}", headers=ADMIN).status_code == 200
        assert g["id"] in ids(c, ADMIN)
        mine = make(c, A, {"dogen": "chienfr"})
        assert c.delete(f"/glossaries/{mine['id']}", headers=ADMIN).status_code == 204
        assert mine["id"] not in ids(c, A)

        # the owner deletes: gone for everyone, also for /translate
        assert c.delete(f"/glossaries/{g['id']}", headers=T).status_code == 204
        assert c.get(f"/glossaries/{g['id']}", headers=T).status_code == 404
        assert c.get(f"/glossaries/{g['id']}", headers=ADMIN).status_code == 404
        assert c.delete(f"/glossaries/{g['id']}", headers=T).status_code == 404
        assert translate(c, T, text="Wateren", glossary_id=g["id"]).status_code == 404
        assert g["id"] not in ids(c, T)
        assert c.get("/glossaries").status_code == 401  # a key is required


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"entries": {f"w{i}": "x" for i in range(1001)}}, "1001 entries; the limit is 1000"),
        ({"entries": {"a" * 201: "x"}}, "201 characters; the limit is 200"),
        ({"entries": {"water": "b" * 201}}, "201 characters; the limit is 200"),
        ({"entries": {}}, "entries"),
        ({"entries": {"Water": "eau", "water": "l'eau"}}, "same term"),
        ({"source": "xx-nope"}, "source"),
        ({"target": "eng"}, "same language"),
        ({"name": ""}, "name"),
    ],
)
def test_create_refusals_are_422_with_what_to_fix(stack: Stack, body: dict[str, Any], fragment: str) -> None:
    full = {"name": "g", "source": "en", "target": "fr", "entries": {"water": "eau"}, **body}
    with stack.client() as c:
        r = c.post("/glossaries", json=full, headers=T)
        assert r.status_code == 422, r.text
        assert fragment in r.json()["message"], r.json()


def test_pair_must_match_the_request(stack: Stack) -> None:
    with stack.client() as c:
        g = make(c, T, {"wateren": "wasserde"}, "en", "de")
        r = translate(c, T, text="wateren", glossary_id=g["id"])  # en->fr with an en->de glossary
        assert r.status_code == 422, r.text
        assert "en->de" in r.json()["message"] and "en->fr" in r.json()["message"]
        assert r.json()["details"] == {"field": "glossary_id"}
        items = [
            {"text": "wateren", "source": "en", "target": "fr", "bridge": "none", "glossary_id": g["id"]},
            {"text": "wateren", "source": "en", "target": "de", "bridge": "none", "glossary_id": g["id"]},
        ]
        out = c.post("/translate/batch", json={"items": items}, headers=T).json()["results"]
        assert not out[0]["ok"] and out[0]["error"]["status"] == 422
        assert out[1]["ok"] and out[1]["result"]["translation"] == "wasserde"
        # streamed: the glossary holds too (a text that is a term is its translation; terms in a text applied)
        r = translate(c, T, text="wateren", task="text", stream=True, glossary_id=g["id"], target="de")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.text
        done = json.loads(r.text.strip().split("\n\n")[-1].split("data: ", 1)[1])
        assert done["translation"] == "wasserde" and done["glossary"]["direct"] is True, done
        r = translate(c, T, text="the wateren is cold", task="text", stream=True, glossary_id=g["id"], target="de")
        done = json.loads(r.text.strip().split("\n\n")[-1].split("data: ", 1)[1])
        plain = translate(c, T, text="the wateren is cold", task="text", glossary_id=g["id"], target="de").json()
        assert done["glossary"]["applied"] == ["wateren"] == plain["glossary"]["applied"], done
        assert done["translation"] == plain["translation"] and done["glossary"] == plain["glossary"]
        c.delete(f"/glossaries/{g['id']}", headers=T)


def test_word_that_is_a_term_is_answered_from_the_glossary(stack: Stack) -> None:
    gen = SyncGenerationClient(stack.worker, timeout=30)
    with stack.client() as c:
        g = make(c, T, TERMS)
        # a word that is no term: generated as without a glossary, nothing applied
        before = worker_requests(stack.worker)
        r = translate(c, T, text="dogen", glossary_id=g["id"])
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["glossary"] == {"id": g["id"], "applied": [], "missing": [], "not_enforced": [], "direct": False}
        assert out["translation"] == parse_word(gen.complete(word_prompt("dogen", "en", "fr"), max_tokens=16).text)
        assert worker_requests(stack.worker) > before  # the counter moves with generations

        for text, bridge in (("wateren", "none"), ("  WATEREN ", "de"), ("Red  EN", "auto")):
            before = worker_requests(stack.worker)
            r = translate(c, T, text=text, bridge=bridge, glossary_id=g["id"])
            assert r.status_code == 200, r.text
            out = r.json()
            term = "Wateren" if "water" in text.lower() else "red en"
            assert out["translation"] == TERMS[term]
            assert out["glossary"] == {
                "id": g["id"],
                "applied": [term],
                "missing": [],
                "not_enforced": [],
                "direct": True,
            }
            assert out["bridge"] is None and out["bridge_source"] == "none" and out["k_shot"] == 0
            assert "no generation" in out["bridge_reason"] and out["warnings"] == []
            assert worker_requests(stack.worker) == before  # nothing was generated
        c.delete(f"/glossaries/{g['id']}", headers=T)


def test_terms_in_a_text_become_demonstrations_and_are_checked(stack: Stack) -> None:
    gen = SyncGenerationClient(stack.worker, timeout=30)
    text = "The houseen stands by the wateren, the houseen is old."
    term_demos = [Demo("houseen", "maisonfr"), Demo("Wateren", "EAU-GLOSSAIRE")]  # order of occurrence
    with stack.client() as c:
        g = make(c, T, TERMS)
        for bridge in ("none", "de"):
            r = translate(c, T, text=text, task="text", max_tokens=8, bridge=bridge, glossary_id=g["id"])
            assert r.status_code == 200, r.text
            out = r.json()
            # the prompt carried the term pairs: the answer is the worker's to exactly that prompt
            if bridge == "none":
                prompt = sentence_prompt(text, "en", "fr", demos=term_demos)
            else:
                btext = parse_sentence(gen.complete(sentence_prompt(text, "en", "de"), max_tokens=8).text) or None
                assert out["bridge_text"] == btext
                prompt = sentence_prompt(
                    text, "en", "fr", bridge="de" if btext else None, bridge_text=btext, demos=term_demos
                )
            want = parse_sentence(gen.complete(prompt, max_tokens=8).text)
            assert out["translation"] == want
            assert out["k_shot"] == 0  # the stack's k_shot; the term lines are the glossary's
            lacking = [d.source_text for d in term_demos if not contains(want, d.target_text, "fr")]
            assert out["glossary"] == {
                "id": g["id"],
                "applied": ["houseen", "Wateren"],
                "missing": lacking,
                "not_enforced": [],
                "direct": False,
            }
            flagged = [w for w in out["warnings"] if f"glossary {g['id']}" in w]
            assert len(flagged) == len(lacking)
            # without the glossary: the plain prompt, and no glossary part
            plain = translate(c, T, text=text, task="text", max_tokens=8, bridge="none").json()
            assert plain["glossary"] is None
            assert plain["translation"] == parse_sentence(
                gen.complete(sentence_prompt(text, "en", "fr"), max_tokens=8).text
            )
        c.delete(f"/glossaries/{g['id']}", headers=T)


def test_measure_script_against_the_stack(stack: Stack, tmp_path: Path) -> None:
    import scripts.measure_glossary as measure

    out = tmp_path / "m.json"
    argv = ["--api", stack.api, "--key", "k-translate", "--pairs", "en-fr", "--n", "3", "--max-tokens", "4"]
    report = measure.main([*argv, "--data-dir", stack.env["BRIDGEX_DATA_DIR"], "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    (pair,) = report["pairs"]
    assert pair["sentences"] == 3 and pair["failed"] == 0 and pair["units"] >= 3
    for cond in ("without_glossary", "with_glossary"):
        x = pair[cond]
        assert x["n"] == pair["units"] and 0 <= x["ci95"][0] <= x["rate"] <= x["ci95"][1] <= 1
    assert pair["applied_as_counted"]["rate"] == 1.0  # the gateway applied exactly the terms counted
    assert all(row["applied"] for row in pair["rows"])
    assert report["pooled"]["units"] == pair["units"]
    with stack.client() as c:  # the script's glossary is gone
        names = [g["name"] for g in c.get("/glossaries", headers=T).json()["glossaries"]]
        assert not [n for n in names if n.startswith("measure_glossary")]


def test_source_auto_matches_the_detected_source(stack: Stack) -> None:
    text = "All human beings are born free and equal in dignity and rights."
    with stack.client() as c:
        en = make(c, T, {"Human Beings": "êtres humains"})
        de = make(c, T, {"Menschen": "êtres humains"}, "de", "fr")
        r = translate(c, T, text=text, source="auto", task="text", max_tokens=4, glossary_id=en["id"])
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["detected_source"] == "en" and out["glossary"]["applied"] == ["Human Beings"]
        r = translate(c, T, text=text, source="auto", task="text", max_tokens=4, glossary_id=de["id"])
        assert r.status_code == 422 and "de->fr" in r.json()["message"] and "en->fr" in r.json()["message"]
        for g in (en, de):
            c.delete(f"/glossaries/{g['id']}", headers=T)
