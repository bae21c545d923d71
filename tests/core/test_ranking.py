"""Depth window, true-layer keying (the reference position-keying bug shown), ranking output."""

from __future__ import annotations

import json

import pytest
import torch
from bridgex.cancel import Cancelled
from bridgex.hsic import layer_score
from bridgex.neurons import indices_to_mask
from bridgex.ranking import Ranking, rank_bridges, window_layers


def test_window_layers() -> None:
    assert window_layers(32) == list(range(10, 22))  # the scripts' layers 10..21 of Llama-3-8B
    assert window_layers(18) == list(range(6, 12))  # Gemma-3-270M
    assert window_layers(4) == [1, 2]
    assert window_layers(1) == [0]
    assert window_layers(10, (0.0, 1.0)) == list(range(10))
    assert window_layers(2, (0.4, 0.45)) == [0]  # too thin for a layer centre: the layer holding its midpoint
    for bad in [(0.5, 0.5), (-0.1, 0.5), (0.2, 1.2)]:
        with pytest.raises(ValueError, match="window"):
            window_layers(32, bad)
    with pytest.raises(ValueError, match="num_layers"):
        window_layers(0)


SHAPE = (5, 8)  # 5 layers, 8 neurons
LAYERS = [2, 3, 4]  # the window; probe_acts rows 0, 1, 2


def _fixture() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    n = 40
    acts = torch.rand(len(LAYERS), SHAPE[1], n, generator=g, dtype=torch.float64)
    # candidate "b" neurons 5, 6 follow pair neuron 0 (dependent); "a" neurons are independent noise
    for r in range(len(LAYERS)):
        acts[r, 5] = acts[r, 0] * 3 + (0.5 + r) * acts[r, 5]  # less dependent in deeper window layers
        acts[r, 6] = acts[r, 1] + (0.5 + r) * acts[r, 6]
    # three neurons per set and layer: with two, half the cdist values are the zero diagonal and the
    # scripts' lower-middle median makes sigma 1e-6 (every HSIC = N - 1)
    pair = indices_to_mask([(layer, j) for layer in LAYERS for j in (0, 1, 2)] + [(0, 3)], SHAPE)
    sets = {
        # "a" has nothing in layer 2: a layer missing from one set
        "a": indices_to_mask([(layer, j) for layer in (3, 4) for j in (3, 4, 7)] + [(1, 5)], SHAPE),
        "b": indices_to_mask([(layer, j) for layer in LAYERS for j in (5, 6, 7)], SHAPE),
        "none": indices_to_mask([(0, 5), (1, 6)], SHAPE),  # nothing in the window
    }
    return acts, pair, sets


def _direct(acts: torch.Tensor, pair: torch.Tensor, bset: torch.Tensor, layer: int) -> float:
    r = LAYERS.index(layer)
    x = acts[r][pair[layer]]
    y = acts[r][bset[layer]]
    return layer_score(x, y)


def position_keyed_score(acts: torch.Tensor, pair: torch.Tensor, bset: torch.Tensor) -> float:
    """The reference (bridge_hsic.py): scores keyed by enumerate() position, then averaged over the window."""
    scored = [layer for layer in LAYERS if pair[layer].any() and bset[layer].any()]
    sims = [_direct(acts, pair, bset, layer) for layer in scored]
    by_key = dict(enumerate(sims))  # the bug: key = position, not the layer id
    vals = [by_key.get(layer, 0.0) for layer in LAYERS]
    valid = [v for v in vals if v != 0.0]
    return sum(valid) / len(valid) if valid else 0.0


def test_scores_are_keyed_by_true_layer_id_unlike_the_reference() -> None:
    acts, pair, sets = _fixture()
    ranking = rank_bridges(acts, LAYERS, pair, sets)
    by_code = {c.code: c for c in ranking.ranked}
    a = by_code["a"]
    assert set(a.per_layer) == {3, 4}  # true layer ids; layer 2 has no "a" neuron
    for layer in (3, 4):
        assert a.per_layer[layer] == pytest.approx(_direct(acts, pair, sets["a"], layer), rel=1e-12)
    expected_a = (_direct(acts, pair, sets["a"], 3) + _direct(acts, pair, sets["a"], 4)) / 2
    assert a.score == pytest.approx(expected_a, rel=1e-12)
    assert a.coverage == pytest.approx(2 / 3)
    assert a.set_sizes == {2: 0, 3: 3, 4: 3}
    # the position-keyed version reads the wrong layers: a's scores land on keys 0, 1 (outside the window)
    assert position_keyed_score(acts, pair, sets["a"]) != pytest.approx(a.score, rel=1e-6)
    b = by_code["b"]
    assert set(b.per_layer) == {2, 3, 4}
    expected_b = sum(_direct(acts, pair, sets["b"], layer) for layer in LAYERS) / 3
    assert b.score == pytest.approx(expected_b, rel=1e-12)
    assert position_keyed_score(acts, pair, sets["b"]) != pytest.approx(b.score, rel=1e-6)


def test_ranking_order_missing_candidates_and_provenance() -> None:
    acts, pair, sets = _fixture()
    seen: list[tuple[int, int]] = []
    ranking = rank_bridges(
        acts,
        LAYERS,
        pair,
        sets,
        provenance={"model_id": "tiny", "revision": "abc", "probe_hash": "p1", "src": "id", "tgt": "he"},
        params={"selection": "top_rate", "bridge_set": "specific"},
        progress=lambda done, total: seen.append((done, total)),
    )
    assert [c.code for c in ranking.ranked] == ["b", "a", "none"]  # dependent neurons win
    assert [c.rank for c in ranking.ranked] == [1, 2, 3]
    assert ranking.best == "b"
    last = ranking.ranked[-1]
    assert last.score is None and last.per_layer == {} and last.coverage == 0.0
    assert ranking.pair_set_sizes == {2: 3, 3: 3, 4: 3}
    assert ranking.layers == LAYERS
    assert ranking.model_id == "tiny" and ranking.probe_hash == "p1" and ranking.src == "id"
    assert ranking.method_version and ranking.created_at
    assert ranking.params["selection"] == "top_rate" and ranking.params["hsic_variant"] == "reference"
    assert seen[-1] == (9, 9)
    dumped = json.loads(json.dumps(ranking.model_dump(mode="json")))
    again = Ranking.model_validate(dumped)
    assert again.ranked[1].per_layer == ranking.ranked[1].per_layer  # int keys survive JSON


def test_cka_variant_and_candidate_subset() -> None:
    acts, pair, sets = _fixture()
    ranking = rank_bridges(acts, LAYERS, pair, sets, hsic_variant="cka", candidates=["a", "b"])
    assert [c.code for c in ranking.ranked] == ["b", "a"]
    assert all(0.0 <= v <= 1.0 + 1e-9 for c in ranking.ranked for v in c.per_layer.values())


def test_no_candidate_scored_gives_no_best() -> None:
    acts, pair, sets = _fixture()
    ranking = rank_bridges(acts, LAYERS, pair, {"none": sets["none"]})
    assert ranking.best is None and ranking.ranked[0].score is None


def test_cancel_between_layers() -> None:
    acts, pair, sets = _fixture()
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        rank_bridges(acts, LAYERS, pair, sets, should_cancel=lambda: next(calls) >= 2)


def test_bad_input() -> None:
    acts, pair, sets = _fixture()
    with pytest.raises(ValueError, match="probe_acts"):
        rank_bridges(acts, [2, 3], pair, sets)
    with pytest.raises(ValueError, match="no bridge set"):
        rank_bridges(acts, LAYERS, pair, sets, candidates=["zz"])
    with pytest.raises(ValueError, match="out of range"):
        rank_bridges(acts, [2, 3, 9], pair, sets)
    with pytest.raises(ValueError, match="provenance"):
        rank_bridges(acts, LAYERS, pair, sets, provenance={"colour": "red"})


def test_tiny_sets_flag_degenerate_bandwidth() -> None:
    """One neuron per set: the median of [0, 0, d, d]-style distances is the zero diagonal, sigma ~ 1e-6 and every
    HSIC entry is N - 1 (the reference's behaviour, kept); the ranking flags those layers."""
    g = torch.Generator().manual_seed(0)
    n_samples = 20
    acts = torch.randn(2, 8, n_samples, generator=g)
    pair = indices_to_mask([(0, 0), (1, 0), (1, 1), (1, 2)], (2, 8))
    tiny = indices_to_mask([(0, 5)], (2, 8))  # layer 0 only: 1 x 1 neurons
    big = indices_to_mask([(0, 4), (0, 5), (0, 6), (1, 4), (1, 5), (1, 6)], (2, 8))
    r = rank_bridges(acts, [0, 1], pair, {"tiny": tiny, "big": big})
    by = {c.code: c for c in r.ranked}
    assert by["tiny"].degenerate_layers == [0]
    assert by["tiny"].per_layer[0] == pytest.approx(n_samples - 1, rel=1e-4)
    assert by["big"].degenerate_layers == []


def test_lape_sets_come_from_one_fixed_language_set() -> None:
    """LAPE normalises over settings.lape_languages, so a bridge's set does not depend on the pair analysed."""
    from bridgex.pipeline import rank_pair

    g = torch.Generator().manual_seed(0)
    langs = ["en", "de", "fr", "it", "pt", "sw"]
    probs = {c: torch.rand(6, 32, generator=g) for c in langs}
    acts = torch.rand(2, 32, 12, generator=g)
    layers = [2, 3]
    kw = {"selection": "lape", "lape_languages": langs, "lape_ratio": 0.2, "lape_quantile": 0.8}
    a = rank_pair(probs, acts, layers, "en", "fr", ["de", "it"], **kw)
    b = rank_pair(probs, acts, layers, "sw", "pt", ["de", "it"], **kw)
    assert a.params["set_sizes"] == b.params["set_sizes"]  # same T_L for every language, whatever the pair
    assert a.params["lape_languages"] == langs and a.params["lape_ratio"] == 0.2
    # the old behaviour (normalising over the job's languages only) gives different sets
    only_job = rank_pair(
        {c: probs[c] for c in ["en", "fr", "de", "it"]},
        acts,
        layers,
        "en",
        "fr",
        ["de", "it"],
        **{**kw, "lape_languages": ["en", "fr", "de", "it"]},
    )
    assert (
        only_job.params["set_sizes"]["de"] != a.params["set_sizes"]["de"]
        or only_job.params["set_sizes"]["it"] != a.params["set_sizes"]["it"]
    )
    with pytest.raises(ValueError, match=r"missing language profiles for \['sw'\]"):
        rank_pair({c: probs[c] for c in langs if c != "sw"}, acts, layers, "en", "fr", ["de"], **kw)
