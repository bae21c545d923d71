"""The dashboard at /ui in a real browser (Debian's chromium driven by Playwright), against the package's real
stack: gateway, Redis, Celery worker and the vLLM worker serving the tiny model, with rankings published by a
real analysis. Screenshots of every page are kept as test artifacts in $BRIDGEX_UI_SHOTS (default
var/test-artifacts/ui/ in the repository, gitignored)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import A, Stack
from tests.api.test_gateway import wait_job
from tests.support import ROOT

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ANALYZE_KEY = A["X-API-Key"]
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def published(stack: Stack) -> list[str]:
    """Two pairs analysed for real (tiny model), so the matrix and the pair page have rankings to show."""
    with stack.client() as c:
        ids = [
            c.post("/analyze", json={"source": s, "target": t}, headers=A).json()["id"]
            for s, t in (("en", "fr"), ("en", "de"))
        ]
        recs = [wait_job(c, i) for i in ids]
    assert all(r["state"] == "succeeded" for r in recs), recs
    return ids


@pytest.fixture
def page(browser, stack: Stack, tmp_path: Path):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    ctx.close()


def _shots(stack: Stack) -> Path:
    d = Path(os.environ.get("BRIDGEX_UI_SHOTS") or ROOT / "var" / "test-artifacts" / "ui")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _login(page, stack: Stack, key: str = ANALYZE_KEY) -> None:
    page.goto(f"{stack.api}/ui/#/matrix")
    page.fill("#api-key", key)
    page.click("#key-form button")


def test_wrong_key_shows_the_gateways_401(page, stack: Stack) -> None:
    page.goto(f"{stack.api}/ui/#/matrix")
    assert page.locator("#key-form").is_visible()  # keys are configured: the page asks for one
    page.fill("#api-key", "not-a-key")
    page.click("#key-form button")
    err = page.locator("#error")
    err.wait_for(state="visible")
    assert err.inner_text().startswith("401:") and "API key" in err.inner_text()
    page.screenshot(path=str(_shots(stack) / "login-401.png"))


def test_matrix_then_pair_page(page, stack: Stack, published: list[str]) -> None:
    with stack.client() as c:
        pairs = {(p["source"], p["target"]): p for p in c.get("/bridges", headers=A).json()["pairs"]}
    assert {("en", "fr"), ("en", "de")} <= set(pairs)
    _login(page, stack)
    page.wait_for_selector("#matrix td.cell")
    for (s, t), p in pairs.items():
        cell = page.locator(f'#matrix td[data-source="{s}"][data-target="{t}"]')
        assert cell.inner_text().strip() == (p["served"] or "none"), (s, t, p)
        assert f"HSIC best {p['best']}" in (cell.get_attribute("title") or "")
    assert page.locator('#matrix td[data-source="fi"][data-target="hu"]').inner_text().strip() == "·"
    page.screenshot(path=str(_shots(stack) / "matrix.png"), full_page=True)

    # keyboard: focus the first cell, arrows move, Enter opens that pair
    page.locator("#matrix td.cell[tabindex='0']").focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.col") is not None

    page.locator('#matrix td[data-source="en"][data-target="fr"]').click()
    page.wait_for_selector("#chart")
    with stack.client() as c:
        ranking = c.get("/bridges/en/fr", headers=A).json()
    codes = [x["code"] for x in ranking["ranked"]]
    series = page.locator("#chart g.series")
    assert series.count() == len(codes) == 2
    assert sorted(series.nth(i).get_attribute("data-code") for i in range(series.count())) == sorted(codes)
    assert page.locator("#ranked tbody tr").count() == len(codes)
    assert page.locator("#sizes tbody tr").count() == len(ranking["layers"])
    assert ranking["probe_hash"] in page.locator("#provenance").inner_text()
    lo = ranking["language_overlap"]  # the languages profiled: the pair and its candidates
    assert set(lo["codes"]) == {"en", "fr", "de", "it"}
    assert page.locator("#heatmap rect.hm").count() == len(lo["codes"]) ** 2
    assert f"{lo['codes'][0]} ∩ {lo['codes'][1]}: {lo['overlap'][0][1]} neurons" in page.inner_html("#heatmap")
    page.screenshot(path=str(_shots(stack) / "pair.png"), full_page=True)

    # re-analyse answers with the (finished) job of the same request; invalidate needs the admin scope, which
    # this key lacks: the gateway's own 403 message is shown
    page.click("#reanalyse")
    page.wait_for_selector("#action:has-text('analysis ')")
    assert page.inner_text("#action").endswith("succeeded")
    page.click("#invalidate")
    err = page.locator("#error")
    err.wait_for(state="visible")
    assert err.inner_text().startswith("403:") and "admin" in err.inner_text()
    with stack.client() as c:
        assert c.get("/bridges/en/fr", headers=A).status_code == 200  # nothing was deleted


def _p(text: str) -> float:
    return float(text.replace("–", "nan"))


def _assert_decision_shown(page, d: dict, notes: dict) -> None:
    """The pair page's "Serving decision" section shows decision `d` and the notes' failed generations, cell by
    cell."""
    keys = page.locator("#decision-summary th").all_inner_texts()
    summary = dict(zip(keys, page.locator("#decision-summary td").all_inner_texts(), strict=True))
    assert summary["incumbent"] == d["incumbent"] and summary["served"] == d["served"]
    assert float(summary["alpha"]) == d["alpha"] and summary["design"] == d["design"]
    assert summary["closed by"].startswith(d["closed_by"].replace("_", " ") + ":")
    assert f"look {d['look'] + 1} of {len(d['looks'])}, {d['words']} dev words" in summary["closed by"]
    errors = {c: n for c, n in notes["errors"].items() if n}
    excluded = summary["failed generations excluded"]
    per_condition = ", ".join(f"{c}: {n}" for c, n in errors.items())
    assert excluded == (f"{sum(errors.values())} ({per_condition})" if errors else "none")
    assert summary["retried"] == str(notes["retried"])

    looks = page.locator("#looks tbody tr")
    assert looks.count() == len(d["looks"])
    for i, (words, level) in enumerate(zip(d["looks"], d["levels"], strict=True)):
        cells = looks.nth(i).locator("td").all_inner_texts()
        assert cells[:2] == [str(i + 1), str(words)]
        assert _p(cells[2]) == pytest.approx(level, rel=1e-3)
        assert ("closed here" in cells[3]) == (i == d["look"])

    rows = page.locator("#challengers tbody tr")
    assert rows.count() == len(d["tests"]) >= 1
    for i, t in enumerate(d["tests"]):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert cells[:4] == [t["condition"], str(t["n"]), str(t["wins"]), str(t["losses"])], (cells, t)
        assert _p(cells[4]) == pytest.approx(t["p_value"], rel=1e-3)
        if t["holm_level"] is None:
            assert cells[5] == "–"
        else:
            assert _p(cells[5]) == pytest.approx(t["holm_level"], rel=1e-3)
        assert cells[6:] == ["yes" if t["significant"] else "no", "yes" if t["dropped"] else "no"]


def test_pair_page_shows_the_serving_decision_and_demonstrations(page, stack: Stack, published: list[str]) -> None:
    with stack.client() as c:
        ranking = c.get("/bridges/en/de", headers=A).json()
    served, validation = ranking["served"], ranking["validation"]
    d = served["decision"]
    assert d is not None and validation["policy"] == "validated"  # dev words >= dev_min: the paired test ran
    assert d == validation["decision"]
    _login(page, stack)
    page.goto(f"{stack.api}/ui/#/pair/en/de")
    page.wait_for_selector("#decision #challengers")

    _assert_decision_shown(page, d, validation["notes"])
    assert page.locator("#dev tbody tr").count() == len(validation["scores"])  # the dev accuracies stay

    words = served.get("demo_words")
    if words:
        assert page.locator("#demos #demo-words li").all_inner_texts() == words
    else:  # the test stack runs zero-shot (BRIDGEX_K_SHOT=0): nothing to show, and the page says so
        assert page.locator("#demos #demo-words").count() == 0
        assert page.inner_text("#demos #no-demos").startswith("no demonstrations")
    page.screenshot(path=str(_shots(stack) / "pair-decision.png"), full_page=True)


def test_pair_page_older_ranking_and_demonstration_words(page, stack: Stack, published: list[str]) -> None:
    """The branches the zero-shot test stack does not publish: the gateway's real /bridges/en/de response, edited
    in flight into a ranking from before the paired test (no decision, no demo words), then into one that
    carries demonstration words."""
    edit: dict[str, object] = {}

    def handler(route) -> None:
        resp = route.fetch()
        body = resp.json()
        for part, fields in edit.items():
            for k, v in fields.items():
                if v is None:
                    body[part].pop(k, None)
                else:
                    body[part][k] = v
        route.fulfill(response=resp, json=body)

    page.route("**/bridges/en/de", handler)
    _login(page, stack)
    edit.update(served={"decision": None, "demo_words": None}, validation={"decision": None})
    page.goto(f"{stack.api}/ui/#/pair/en/de")
    page.wait_for_selector("#decision #no-decision")
    assert page.inner_text("#no-decision").startswith("no paired test recorded")
    assert page.locator("#challengers").count() == 0
    assert page.inner_text("#demos #no-demos") == "no demonstrations (this ranking does not record them)"

    words = ["waterEN", "house<b>", "dog"]
    shown = {"none": ["waterEN", "house<b>"], "fr": ["waterEN", "dog"]}
    edit.update(served={"demo_words": words}, validation={"k_shot": 2, "notes": {"demos": shown}})
    page.goto(f"{stack.api}/ui/#/matrix")
    page.wait_for_selector("#matrix")
    page.goto(f"{stack.api}/ui/#/pair/en/de")
    page.wait_for_selector("#demos #demo-words")
    assert page.locator("#demo-words li").all_inner_texts() == words  # escaped: shown as text, not markup
    assert page.locator("#demo-words li.first-k").count() == 2
    assert "first 2 of them" in page.inner_text("#demos")
    rows = page.locator("#demos-by-condition tbody tr").all_inner_texts()
    assert [r.split("\t") for r in rows] == [[c, ", ".join(ws)] for c, ws in shown.items()]

    # a decision with more to show than the tiny model's (all-wrong) answers give: two looks, efficacy at the
    # second, a challenger stopped for futility, a p-value small enough for exponent notation, failed generations
    decision = {
        "incumbent": "none",
        "served": "it",
        "alpha": 0.05,
        "design": "Haybittle-Peto looks, union bound over looks, Holm over challengers, non-binding futility",
        "looks": [100, 200],
        "levels": [0.001, 0.049],
        "look": 1,
        "words": 200,
        "closed_by": "efficacy",
        "tests": [
            {"condition": "it", "n": 197, "wins": 17, "losses": 1, "p_value": 7.25e-05, "holm_level": 0.0245,
             "significant": True, "dropped": False},
            {"condition": "en", "n": 98, "wins": 2, "losses": 5, "p_value": 1.0, "holm_level": 0.049,
             "significant": False, "dropped": True},
            {"condition": "fr", "n": 199, "wins": 6, "losses": 4, "p_value": 0.377, "holm_level": None,
             "significant": False, "dropped": False},
        ],
    }  # fmt: skip
    notes = {"errors": {"it": 2, "none": 1, "en": 0}, "retried": 5, "generations": 700, "memo_hits": 0}
    edit.update(served={"decision": decision}, validation={"decision": decision, "notes": notes})
    page.goto(f"{stack.api}/ui/#/matrix")
    page.wait_for_selector("#matrix")
    page.goto(f"{stack.api}/ui/#/pair/en/de")
    page.wait_for_selector("#decision #challengers")
    _assert_decision_shown(page, decision, notes)
    assert page.locator("#challengers tbody tr").nth(0).locator("td").nth(4).inner_text() == "7.25e-5"
    assert page.inner_text("#decision-summary td[data-key='failed generations excluded']") == "3 (it: 2, none: 1)"
    assert page.locator("#challengers tr.served").get_attribute("data-condition") == "it"
    page.screenshot(path=str(_shots(stack) / "pair-decision-edited.png"), full_page=True)


def test_jobs_page_shows_progress_to_100_without_reload(page, stack: Stack) -> None:
    _login(page, stack)
    page.goto(f"{stack.api}/ui/#/jobs")
    page.wait_for_selector("#start")
    marker = page.evaluate("window.__noReload = Math.random()")
    page.fill("#start input[name=source]", "fr")
    page.fill("#start input[name=target]", "de")
    page.click("#start button")
    page.wait_for_selector("#started:has-text('job ')")
    job_id = re.search(r"job (\w+)", page.inner_text("#started")).group(1)
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    row.wait_for()
    row.locator("td.state:has-text('succeeded')").wait_for(timeout=150_000)
    assert row.locator(".percent").inner_text() == "100%"
    assert page.evaluate("window.__noReload") == marker  # the same document: updated live, not reloaded
    page.screenshot(path=str(_shots(stack) / "jobs.png"), full_page=True)


def _fill_translate(page, **fields: str) -> None:
    """Type into the translate form's inputs, by name."""
    for name, value in fields.items():
        page.fill(f"#tr input[name={name}]", value)


def test_translate_box_shows_chain_and_source(page, stack: Stack) -> None:
    _login(page, stack)
    page.goto(f"{stack.api}/ui/#/translate")
    _fill_translate(page, text="water", source="en", target="fr", bridge="de", k_shot="0")
    page.click("#tr button")
    page.wait_for_selector("#chain")
    with stack.client() as c:
        want = c.post(
            "/translate", headers=A, json={"text": "water", "source": "en", "target": "fr", "bridge": "de", "k_shot": 0}
        ).json()
    chain = page.inner_text("#chain")
    assert chain == f'en:"water"→de:"{want["bridge_text"]}"→fr:"{want["translation"]}"', chain
    assert page.inner_text("#bridge-source") == "explicit"
    page.screenshot(path=str(_shots(stack) / "translate.png"), full_page=True)


def test_translate_page_confidence_alternatives_stream_and_usage(page, stack: Stack) -> None:
    """Issue 23 item 7: the translate page shows confidence and alternatives, streams a text, uses detection;
    the usage page shows the key's counters."""
    _login(page, stack)
    page.goto(f"{stack.api}/ui/#/translate")
    _fill_translate(page, text="water", source="en", target="fr", bridge="none", k_shot="0", alternatives="3")
    page.click("#tr button")
    page.wait_for_selector("#alternatives li")
    with stack.client() as c:
        want = c.post(
            "/translate",
            headers=A,
            json={"text": "water", "source": "en", "target": "fr", "bridge": "none", "k_shot": 0, "alternatives": 3},
        ).json()
    shown = page.locator("#alternatives li .alt").all_inner_texts()
    assert shown == [a["translation"] for a in want["alternatives"]], (shown, want)
    assert f"{want['confidence']:.3f}" in page.inner_text("#confidence")
    page.screenshot(path=str(_shots(stack) / "translate-alternatives.png"), full_page=True)

    # a sentence, streamed: the final answer is the non-streamed one
    page.fill("#tr input[name=text]", "the water is cold")
    page.select_option("#tr select[name=task]", "text")
    page.fill("#tr input[name=alternatives]", "1")
    page.check("#tr input[name=stream]")
    page.click("#tr button")
    page.wait_for_selector("#chain")
    with stack.client() as c:
        text = c.post(
            "/translate",
            headers=A,
            json={
                "text": "the water is cold",
                "source": "en",
                "target": "fr",
                "bridge": "none",
                "k_shot": 0,
                "task": "text",
            },
        ).json()
    assert page.inner_text("#answer") == text["translation"]

    # detection: source auto on an unambiguous sentence
    page.uncheck("#tr input[name=stream]")
    page.fill("#tr input[name=text]", "Der Hund schläft im Garten, weil die Sonne scheint.")
    page.fill("#tr input[name=source]", "auto")
    page.click("#tr button")
    page.wait_for_function(
        "document.querySelector('#detected') && /detected/.test(document.querySelector('#detected').textContent)"
    )
    assert page.inner_text("#detected").startswith("de (detected")

    page.goto(f"{stack.api}/ui/#/usage")
    page.wait_for_selector("#usage")
    with stack.client() as c:
        mine = c.get("/usage", headers=A).json()
    assert page.inner_text("#key-id") == mine["key_id"]
    today = page.locator("#usage tr[data-period=today] td").all_inner_texts()
    assert int(today[0]) >= 3 and int(today[1]) >= len("the water is cold"), today
    page.screenshot(path=str(_shots(stack) / "usage.png"), full_page=True)
