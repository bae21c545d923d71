"""HSIC against a literal double-loop implementation of method.md step 5 (the scripts' formula)."""

from __future__ import annotations

import pytest
import torch
from bridgex.hsic import cka_matrix, hsic_matrix, layer_score, median_sigma, plan, standardize


def literal_standardize(m: torch.Tensor) -> torch.Tensor:
    return (m - m.mean(dim=1, keepdim=True)) / (m.std(dim=1, keepdim=True) + 1e-6)


def literal_sigma(xs: torch.Tensor, ys: torch.Tensor) -> float:
    d = torch.cat([torch.cdist(xs, xs).reshape(-1), torch.cdist(ys, ys).reshape(-1)])
    return torch.median(d).item() + 1e-6


def literal_kernels(ms: torch.Tensor, sigma: float) -> list[torch.Tensor]:
    n = ms.shape[1]
    out = []
    for row in ms:
        k = torch.empty(n, n, dtype=torch.float64)
        for a in range(n):
            for b in range(n):
                k[a, b] = torch.exp(-((row[a] - row[b]) ** 2) / (2 * sigma**2))
        out.append(k)
    return out


def literal_hsic(x: torch.Tensor, y: torch.Tensor, sigma: float | None = None, cka: bool = False) -> torch.Tensor:
    """Step 5 written out: explicit K_i, H, L_j and trace(K_i H L_j) for every pair, in float64."""
    xs = literal_standardize(x.double())
    ys = literal_standardize(y.double())
    if sigma is None:
        sigma = literal_sigma(xs, ys)
    n = x.shape[1]
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    ks, ls = literal_kernels(xs, sigma), literal_kernels(ys, sigma)
    out = torch.zeros(len(ks), len(ls), dtype=torch.float64)
    for i, k in enumerate(ks):
        for j, lj in enumerate(ls):
            if cka:
                a, b = h @ k @ h, h @ lj @ h
                na, nb = torch.linalg.norm(a), torch.linalg.norm(b)
                # a constant row gives K = 11^T, so HKH = 0 up to rounding: CKA defined as 0 there
                out[i, j] = (a * b).sum() / (na * nb) if na > 1e-9 and nb > 1e-9 else 0.0
            else:
                out[i, j] = torch.trace(k @ h @ lj)
    return out


def literal_score(m: torch.Tensor) -> float:
    return (m.max(dim=1).values.mean().item() + m.max(dim=0).values.mean().item()) / 2


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double().cpu() - ref).abs().max() / ref.abs().max().clamp_min(1e-300)).item()


def make(n1: int, n2: int, n: int, seed: int, corr: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, n, generator=g, dtype=torch.float64)
    x = torch.randn(n1, n, generator=g, dtype=torch.float64) + corr * base
    y = torch.randn(n2, n, generator=g, dtype=torch.float64) + corr * base
    # realistic-ish: non-negative, skewed like gated-MLP mean activations
    return torch.nn.functional.softplus(x), torch.nn.functional.softplus(y)


CASES = [
    pytest.param(5, 4, 24, 0, id="random"),
    pytest.param(1, 3, 16, 1, id="n1=1"),
    pytest.param(3, 1, 16, 2, id="n2=1"),
    pytest.param(4, 4, 2, 3, id="N=2"),
    pytest.param(6, 5, 40, 4, id="wider"),
]


@pytest.mark.parametrize(("n1", "n2", "n", "seed"), CASES)
@pytest.mark.parametrize("method", ["exact", "taylor"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hsic_equals_literal_loop(n1: int, n2: int, n: int, seed: int, method: str, dtype: torch.dtype) -> None:
    x, y = make(n1, n2, n, seed)
    ref = literal_hsic(x, y)
    got = hsic_matrix(x.to(dtype), y.to(dtype), method=method)
    assert got.shape == (n1, n2)
    assert got.dtype == dtype
    assert rel_err(got, ref) < 1e-5
    assert layer_score(x.to(dtype), y.to(dtype), method=method) == pytest.approx(literal_score(ref), rel=1e-5)


@pytest.mark.parametrize("method", ["exact", "taylor"])
def test_constant_row(method: str) -> None:
    x, y = make(4, 3, 20, 7)
    x[1] = 0.5  # a neuron that never changes over the probe
    y[2] = 2.0
    ref = literal_hsic(x, y)
    got = hsic_matrix(x, y, method=method)
    assert rel_err(got, ref) < 1e-5
    assert torch.isfinite(got).all()


def test_taylor_is_really_used_and_matches_exact() -> None:
    x, y = make(8, 7, 300, 11, corr=0.3)
    pl, _, _ = plan(x, y, method="auto")
    assert pl.method == "taylor" and pl.terms is not None and pl.bound is not None
    exact = hsic_matrix(x, y, method="exact")
    taylor = hsic_matrix(x, y, method="taylor")
    assert rel_err(taylor, exact.double()) < 1e-10


def test_taylor_falls_back_to_exact_when_bound_is_large() -> None:
    x, y = make(3, 3, 30, 5)
    pl, _, _ = plan(x, y, sigma=0.05, method="taylor")  # tiny bandwidth: exp(ab/s^2) has no short series
    assert pl.method == "exact"
    ref = literal_hsic(x, y, sigma=0.05)
    assert rel_err(hsic_matrix(x, y, sigma=0.05, method="taylor"), ref) < 1e-5


def test_sigma_given_vs_computed() -> None:
    x, y = make(4, 5, 30, 12)
    xs, ys = standardize(x), standardize(y)
    sigma = median_sigma(xs, ys)
    assert sigma == pytest.approx(literal_sigma(literal_standardize(x), literal_standardize(y)), rel=1e-12)
    assert torch.equal(hsic_matrix(x, y), hsic_matrix(x, y, sigma=sigma))
    other = hsic_matrix(x, y, sigma=2 * sigma)
    assert rel_err(other, literal_hsic(x, y, sigma=2 * sigma)) < 1e-5
    assert rel_err(other, hsic_matrix(x, y).double()) > 1e-3  # sigma really is used


def test_median_is_torch_lower_middle() -> None:
    # n1 = n2 = 1: distances [0] and [0] -> median 0; n1=2,n2=1: [0,d,d,0,0] -> 0 (numpy would agree);
    # n1=2, n2=2: [0,d1,d1,0,0,d2,d2,0] -> torch lower middle = 0, numpy's mean of middles = min(d)/2.
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0], [3.0, 1.0, 0.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 5.0, 2.0], [0.0, 2.0, 1.0, 7.0]], dtype=torch.float64)
    assert median_sigma(standardize(x), standardize(y)) == pytest.approx(1e-6)
    xs, ys = standardize(x), standardize(y)
    z = torch.cat([torch.cdist(xs, xs).reshape(-1), torch.cdist(ys, ys).reshape(-1)])
    assert median_sigma(xs, ys) == pytest.approx(torch.median(z).item() + 1e-6, abs=1e-12)


@pytest.mark.parametrize(
    ("x", "y", "msg"),
    [
        (torch.zeros(0, 10), torch.ones(3, 10), "empty"),
        (torch.ones(3, 10), torch.zeros(0, 10), "empty"),
        (torch.ones(3, 1), torch.ones(3, 1), "at least 2"),
        (torch.ones(3, 10), torch.ones(3, 9), "same number of samples"),
        (torch.ones(10), torch.ones(3, 10), "2-D"),
    ],
)
def test_bad_input_is_a_clear_error(x: torch.Tensor, y: torch.Tensor, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        hsic_matrix(x, y)
    with pytest.raises(ValueError, match=msg):
        layer_score(x, y)


def test_bad_options() -> None:
    x, y = make(2, 2, 8, 0)
    with pytest.raises(ValueError, match="method"):
        hsic_matrix(x, y, method="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hsic_variant"):
        layer_score(x, y, hsic_variant="raw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma"):
        hsic_matrix(x, y, sigma=0.0)


@pytest.mark.parametrize("method", ["exact", "taylor"])
def test_chunked_equals_unchunked(method: str) -> None:
    x, y = make(9, 7, 64, 21)
    whole = hsic_matrix(x, y, method=method, chunk=1000)
    for chunk in (1, 2, 4):
        assert torch.allclose(hsic_matrix(x, y, method=method, chunk=chunk), whole, rtol=1e-12, atol=0)
    tiny_budget = hsic_matrix(x, y, method=method, memory_bytes=1)  # forces one neuron per chunk
    assert torch.allclose(tiny_budget, whole, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["exact", "taylor"])
def test_cka_equals_literal_and_is_bounded(method: str) -> None:
    x, y = make(5, 4, 24, 31)
    x[2] = 1.0  # constant row: centred kernel is zero -> CKA defined as 0
    ref = literal_hsic(x, y, cka=True)
    got = cka_matrix(x, y, method=method)
    assert rel_err(got, ref) < 1e-5
    assert (got >= -1e-9).all() and (got <= 1 + 1e-9).all()
    assert torch.all(got[2] == 0)
    same = cka_matrix(x[:1], x[:1], method=method)
    assert same.item() == pytest.approx(1.0, rel=1e-6)
    assert layer_score(x, y, hsic_variant="cka", method=method) == pytest.approx(literal_score(ref), rel=1e-5)


def test_dependent_rows_score_higher_than_independent() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 200, generator=g, dtype=torch.float64)
    dep = x[:4] * 2.0 + 0.1 * torch.randn(4, 200, generator=g, dtype=torch.float64)
    ind = torch.randn(4, 200, generator=g, dtype=torch.float64)
    for variant in ("reference", "cka"):
        assert layer_score(x, dep, variant) > 2 * layer_score(x, ind, variant)


def test_device_follows_x_and_dtype_option() -> None:
    x, y = make(3, 3, 16, 2)
    out = hsic_matrix(x.float(), y.float(), dtype=torch.float64)
    assert out.dtype == torch.float64 and out.device == x.device
    half = hsic_matrix(x.half(), y.half())
    assert half.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["exact", "taylor"])
def test_cuda_matches_cpu(method: str) -> None:
    x, y = make(40, 30, 128, 8)
    cpu = hsic_matrix(x, y, method=method)
    gpu = hsic_matrix(x.cuda(), y.cuda(), method=method)
    assert gpu.device.type == "cuda"
    assert rel_err(gpu.cpu(), cpu.double()) < 1e-9
