"""Language sets, overlap, similarity (with the reference indexing bug shown), pair and bridge sets."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from bridgex.neurons import (
    bridge_set,
    indices_to_mask,
    language_sets,
    mask_to_indices,
    overlap_matrix,
    pair_overlap,
    similarity,
    similarity_matrix,
)


def test_top_rate_includes_ties_at_the_threshold() -> None:
    p = torch.arange(100, dtype=torch.float64).div(100).view(2, 50)
    p.view(-1)[[93, 94]] = 0.95  # three neurons now tie at 0.95 (indices 93, 94, 95)
    other = torch.rand(2, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sets, report = language_sets({"aa": p, "bb": other}, top_rate=0.05)
    # k = round(100 * 0.95) = 95 -> 95th smallest value is 0.95; >= keeps all three ties plus 0.96..0.99
    assert report.thresholds["aa"] == pytest.approx(0.95)
    assert mask_to_indices(sets["aa"]) == [(1, 43), (1, 44), (1, 45), (1, 46), (1, 47), (1, 48), (1, 49)]
    assert report.sizes["aa"] == 7  # more than top_rate * 100 = 5, because of the ties
    assert report.sizes["bb"] == 6  # distinct values: M - k + 1 (the scripts' kthvalue + >=)
    assert sets["aa"].dtype == torch.bool and sets["aa"].shape == (2, 50)


def _lape_probs() -> dict[str, torch.Tensor]:
    rows = [
        [0.90, 0.00, 0.00],  # n0: only lang a, entropy 0
        [0.00, 0.85, 0.05],  # n1: mostly lang b, entropy ~0.215
        [0.90, 0.90, 0.90],  # n2: all languages, entropy log 3
        [0.50, 0.50, 0.00],  # n3: never above the bar -> dropped
        [0.80, 0.00, 0.70],  # n4: a (0.8 > bar) and c at exactly the bar (0.7, not >)
        *([[0.10, 0.10, 0.10]] * 5),
    ]
    t = torch.tensor(rows, dtype=torch.float64).view(1, 10, 3)
    return {c: t[..., k] for k, c in enumerate("abc")}


def test_lape_on_a_constructed_example() -> None:
    probs = _lape_probs()
    # 30 values; k = round(30 * 0.8) = 24 -> bar = 0.70. Eligible: n0, n1, n2, n4. Two lowest entropy: n0, n1.
    sets, report = language_sets(probs, method="lape", lape_ratio=0.2, lape_quantile=0.8)
    assert report.thresholds["activation_bar"] == pytest.approx(0.70)
    assert report.candidates == 2
    assert mask_to_indices(sets["a"]) == [(0, 0)]
    assert mask_to_indices(sets["b"]) == [(0, 1)]
    assert mask_to_indices(sets["c"]) == []
    # three kept: n4 joins (entropy ~0.691 < log 3); it goes to a only, c's 0.7 is not strictly above the bar
    sets, report = language_sets(probs, method="lape", lape_ratio=0.3, lape_quantile=0.8)
    assert mask_to_indices(sets["a"]) == [(0, 0), (0, 4)]
    assert mask_to_indices(sets["c"]) == []
    h4 = -(8 / 15 * math.log(8 / 15) + 7 / 15 * math.log(7 / 15))
    assert report.thresholds["entropy"] == pytest.approx(h4)


def test_language_sets_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        language_sets({})
    with pytest.raises(ValueError, match="same"):
        language_sets({"a": torch.rand(2, 3), "b": torch.rand(2, 4)})
    with pytest.raises(ValueError, match="method"):
        language_sets({"a": torch.rand(2, 3)}, method="nope")  # type: ignore[arg-type]


def test_overlap_matrix_and_pair_overlap() -> None:
    a = indices_to_mask([(0, 1), (1, 2), (1, 3)], (2, 4))
    b = indices_to_mask([(1, 2), (1, 3), (0, 0)], (2, 4))
    c = indices_to_mask([(0, 1)], (2, 4))
    codes, m = overlap_matrix({"a": a, "b": b, "c": c})
    assert codes == ["a", "b", "c"]
    assert m.tolist() == [[3, 2, 1], [2, 3, 0], [1, 0, 1]]
    codes, m = overlap_matrix({"a": a, "b": b, "c": c}, codes=["c", "a"])
    assert m.tolist() == [[1, 1], [1, 3]]
    assert mask_to_indices(pair_overlap({"a": a, "b": b}, "a", "b")) == [(1, 2), (1, 3)]
    with pytest.raises(ValueError, match="known: a, b"):
        pair_overlap({"a": a, "b": b}, "a", "zz")


def reference_similarity(p_i: torch.Tensor, p_j: torch.Tensor, pairs: list[tuple[int, int]]) -> float:
    """The scripts' version: a list of (layer, neuron) tuples as an index into dim 1 reads whole columns."""
    a = p_i[:, pairs].flatten()
    b = p_j[:, pairs].flatten()
    return F.cosine_similarity(a.unsqueeze(0), b.unsqueeze(0), dim=1).item()


def test_similarity_reads_the_right_neurons_unlike_the_reference() -> None:
    g = torch.Generator().manual_seed(5)
    p_i = torch.rand(3, 4, generator=g, dtype=torch.float64)
    p_j = torch.rand(3, 4, generator=g, dtype=torch.float64)
    p_i[1, 2], p_i[2, 0] = 0.3, 0.4
    p_j[1, 2], p_j[2, 0] = 0.4, 0.3
    set_i = indices_to_mask([(1, 2), (2, 0), (0, 3)], (3, 4))
    set_j = indices_to_mask([(1, 2), (2, 0), (2, 3)], (3, 4))
    by_hand = (0.3 * 0.4 + 0.4 * 0.3) / (0.5 * 0.5)  # = 0.96 over neurons (1,2) and (2,0) only
    assert similarity(p_i, p_j, set_i, set_j) == pytest.approx(by_hand, abs=1e-12)
    buggy = reference_similarity(p_i, p_j, mask_to_indices(set_i & set_j))
    assert abs(buggy - by_hand) > 1e-3


def test_similarity_edge_cases() -> None:
    p = torch.rand(2, 3)
    empty = torch.zeros(2, 3, dtype=torch.bool)
    full = torch.ones(2, 3, dtype=torch.bool)
    assert similarity(p, p, empty, full) == 0.0
    assert similarity(p, torch.zeros(2, 3), full, full) == 0.0
    assert similarity(p, p, full, full) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        similarity(p, p, full, torch.ones(3, 2, dtype=torch.bool))
    codes, m = similarity_matrix({"a": p, "b": 2 * p}, {"a": full, "b": full})
    assert codes == ["a", "b"] and torch.allclose(m, torch.ones(2, 2, dtype=torch.float64))


def _bridge_fixture() -> tuple[dict[str, torch.Tensor], torch.Tensor, list[int]]:
    shape = (4, 6)
    sets = {
        "b": indices_to_mask([(0, 0), (1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 5), (2, 1), (3, 0)], shape),
        "s": indices_to_mask([(1, 1), (2, 1)], shape),
        "t": indices_to_mask([(1, 2)], shape),
    }
    layers = [1, 2]
    acts = torch.zeros(2, 6, 4)
    # layer 1 (row 0): means 0:0.5, 1:9 (in s), 2:8 (in t), 3:0.7, 4:0.6 (but negative half the time)
    acts[0, 0] = torch.tensor([0.5, 0.5, 0.5, 0.5])
    acts[0, 1] = torch.tensor([9.0, 9.0, 9.0, 9.0])
    acts[0, 2] = torch.tensor([8.0, 8.0, 8.0, 8.0])
    acts[0, 3] = torch.tensor([0.7, 0.7, 0.7, 0.7])
    acts[0, 4] = torch.tensor([2.0, -0.8, 2.0, -0.8])
    # layer 2 (row 1): 5 active always, 1 (in s) active always with a big mean
    acts[1, 5] = torch.tensor([0.2, 0.2, 0.2, 0.2])
    acts[1, 1] = torch.tensor([5.0, 5.0, 5.0, 5.0])
    return sets, acts, layers


def test_bridge_set_specific() -> None:
    sets, acts, layers = _bridge_fixture()
    out = bridge_set(sets, "b", "s", "t", acts, layers, kind="specific", k=2)
    # layer 1: T_b \ (T_s ∪ T_t) = {0, 3, 4}, means 0.5, 0.7, 0.6 -> top 2 = {3, 4}; layer 2: {5}
    # layers 0 and 3 are outside `layers`: nothing there even though T_b has neurons
    assert mask_to_indices(out) == [(1, 3), (1, 4), (2, 5)]
    assert out.shape == (4, 6) and out.dtype == torch.bool


def test_bridge_set_full() -> None:
    sets, acts, layers = _bridge_fixture()
    out = bridge_set(sets, "b", "s", "t", acts, layers, kind="full", k=2)
    # layer 1: T_b fully active on >= 95% of samples = {0, 1, 2, 3} (4 is active half the time);
    # top 2 by mean = {1, 2}; layer 2: {5, 1} both active -> both kept (k = 2)
    assert mask_to_indices(out) == [(1, 1), (1, 2), (2, 1), (2, 5)]
    half = bridge_set(sets, "b", "s", "t", acts, layers, kind="full", k=10, full_fraction=0.5)
    assert (1, 4) in mask_to_indices(half)


def test_bridge_set_validates_shapes() -> None:
    sets, acts, layers = _bridge_fixture()
    with pytest.raises(ValueError, match="probe_acts"):
        bridge_set(sets, "b", "s", "t", acts, [1, 2, 3])
    with pytest.raises(ValueError, match="out of range"):
        bridge_set(sets, "b", "s", "t", acts, [1, 7])
    with pytest.raises(ValueError, match="bridge set kind"):
        bridge_set(sets, "b", "s", "t", acts, layers, kind="other")  # type: ignore[arg-type]


def test_mask_indices_roundtrip() -> None:
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(1)) > 0.6
    assert torch.equal(indices_to_mask(mask_to_indices(mask), (5, 7)), mask)
    with pytest.raises(ValueError, match="out of range"):
        indices_to_mask([(5, 0)], (5, 7))
