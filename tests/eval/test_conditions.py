"""Rankings (the analyzer's published JSON) -> per-pair conditions."""

from __future__ import annotations

import json
from pathlib import Path

from bridgex.evaluation.conditions import build_conditions, load_rankings
from bridgex.ranking import CandidateScore, Ranking


def _ranking(src: str, tgt: str, order: list[str], selection: str, bridge_set: str) -> dict:
    ranked = [
        CandidateScore(
            code=c,
            score=1.0 - 0.1 * i,
            rank=i + 1,
            per_layer={3: 1.0 - 0.1 * i, 4: 0.5},
            set_sizes={3: 8, 4: 8},
            coverage=1.0,
        )
        for i, c in enumerate(order)
    ]
    r = Ranking(
        ranked=ranked,
        best=order[0],
        layers=[3, 4],
        pair_set_sizes={3: 5, 4: 5},
        params={"selection": selection, "bridge_set": bridge_set},
        src=src,
        tgt=tgt,
    )
    return r.model_dump(mode="json")


def test_load_rankings_by_pair_and_variant(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    one = _ranking("en", "sw", ["de", "fr"], "top_rate", "specific")
    (tmp_path / "a" / "one.json").write_text(json.dumps(one))
    (tmp_path / "two.json").write_text(json.dumps(_ranking("en", "sw", ["fr", "de"], "lape", "full")))
    # a ranking without src/tgt fields: the pair and method come from the file name
    anon = _ranking("id", "tl", ["es", "en"], "top_rate", "specific")
    anon.pop("src"), anon.pop("tgt"), anon.pop("params")
    (tmp_path / "id-tl.lape.specific.json").write_text(json.dumps(anon))
    (tmp_path / "junk.json").write_text('{"not": "a ranking"}')
    (tmp_path / "broken.json").write_text("{")

    got = load_rankings(tmp_path)
    assert set(got) == {("en", "sw"), ("id", "tl")}
    assert set(got[("en", "sw")].by_method) == {"top_rate/specific", "lape/full"}
    assert got[("en", "sw")].by_method["lape/full"].best == "fr"
    assert got[("en", "sw")].by_method["top_rate/specific"].rank_of() == {"de": 1, "fr": 2}
    assert list(got[("id", "tl")].by_method) == ["lape/specific"]
    assert got[("id", "tl")].by_method["lape/specific"].best == "es"


def test_unscored_candidates_are_not_chosen_or_ranked(tmp_path: Path) -> None:
    r = _ranking("en", "sw", ["de", "fr"], "top_rate", "specific")
    r["ranked"][0]["score"] = None
    r["best"] = None
    (tmp_path / "r.json").write_text(json.dumps(r))
    info = load_rankings(tmp_path)[("en", "sw")].by_method["top_rate/specific"]
    assert info.best == "fr" and info.rank_of() == {"fr": 2}


def test_build_conditions(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps(_ranking("id", "tl", ["es", "en"], "top_rate", "specific")))
    pr = load_rankings(tmp_path)[("id", "tl")]
    conds = build_conditions("id", "tl", ["en", "es", "de"], pr, "es")
    assert [(c.name, c.bridge) for c in conds] == [
        ("none", None),
        ("en", "en"),
        ("hsic:top_rate/specific", "es"),
        ("typology", "es"),
        ("cand:en", "en"),
        ("cand:es", "es"),
        ("cand:de", "de"),
    ]
    # English is not a condition when it is a side of the pair; the pair's languages are never bridges
    names = [c.name for c in build_conditions("en", "sw", ["en", "sw", "de"], None, None)]
    assert names == ["none", "cand:de"]


def test_served_condition_follows_the_serving_decision(tmp_path: Path) -> None:
    """serve_policy is covered by the harness: `served:<method>` uses the ranking's decision, even "no bridge"."""
    direct = {
        **_ranking("id", "tl", ["es", "en"], "top_rate", "specific"),
        "served": {"bridge": None, "policy": "validated", "reason": "none won"},
    }
    (tmp_path / "a.json").write_text(json.dumps(direct))
    bridged = {
        **_ranking("id", "tl", ["es", "en"], "top_rate", "full"),
        "served": {"bridge": "en", "policy": "validated", "reason": "en won"},
    }
    (tmp_path / "b.json").write_text(json.dumps(bridged))
    conds = build_conditions("id", "tl", ["es"], load_rankings(tmp_path)[("id", "tl")], None)
    served = [(c.name, c.bridge) for c in conds if c.name.startswith("served:")]
    assert served == [("served:top_rate/full", "en"), ("served:top_rate/specific", None)]
    hsic = [(c.name, c.bridge) for c in conds if c.name.startswith("hsic:")]
    assert hsic == [("hsic:top_rate/full", "es"), ("hsic:top_rate/specific", "es")]  # the argmax differs
