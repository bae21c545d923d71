"""HSIC between two neuron sets over probe samples (method.md step 5), vectorised, chunked, device-aware.

Reference variant (the authors' `compute_hsic`, reproduced exactly up to float rounding):

1. each row standardised: ``(x - mean) / (std_unbiased + 1e-6)``;
2. ``sigma = median(cat(cdist(X, X).flatten(), cdist(Y, Y).flatten())) + 1e-6`` (zeros of the diagonal
   included). The median is ``torch.median``, as the scripts call it: for an even count it returns the LOWER
   of the two middle values (numpy's ``np.median`` would average them);
3. per neuron a 1-D Gaussian kernel over samples ``K_i[a, b] = exp(-(x_ia - x_ib)^2 / (2 sigma^2))``;
4. ``HSIC_ij = trace(K_i H L_j)`` with ``H = I - 11^T/N`` and no ``1/(N-1)^2`` factor.

Why the maths below looks different from the loop: ``trace(K H L) = trace(KH HL) = <HK, HL>_F`` (H is
symmetric and idempotent) and ``HK = HE`` with ``E = K - 11^T = expm1(...)``. Working with the column-centred
``HE`` avoids the catastrophic cancellation of ``<K, L> - (1/N)(K1).(L1)`` (both terms ~N^2, the difference
~1/N), so float32 stays accurate. One GEMM over flattened kernels gives the whole [n1, n2] matrix; neurons are
chunked so memory stays within a budget.

"taylor" factorises each kernel (fast Gauss transform): ``K = P P^T`` with
``phi_k(a) = exp(-a^2/2s^2) (a/s)^k / sqrt(k!)``, k < p. With centred features ``P~ = HP``, ``u = P^T 1``:
``HSIC_ij = sum(M * (M + u_i v_j^T / N))`` where ``M = P~_i^T Q~_j`` -- one [n1 p, N] x [N, n2 p] GEMM.
The truncation error of every kernel entry is at most ``t^p/p! e^t`` with ``t = max(a^2)/s^2``; p is chosen
from that bound and the method falls back to "exact" when the bound is not small enough.

The one deliberate deviation from the scripts: a constant row is standardised to exact zeros (in exact
arithmetic the scripts give zeros too; in float they amplify rounding noise by 1e6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Method = Literal["auto", "exact", "taylor"]
HsicVariant = Literal["reference", "cka"]

DEFAULT_MEMORY_BYTES = 512 * 1024**2
"""Working-memory budget for chunked kernels when none is given (CPU); CUDA uses a share of free memory."""

TAYLOR_MAX_TERMS = 32
"""Above this many Taylor terms the factorised form is no cheaper than it is safe: use the exact form."""


@dataclass(frozen=True)
class HSICPlan:
    """How a call is (or would be) computed: method, Taylor terms, error bound, chunk sizes."""

    method: Literal["exact", "taylor"]
    sigma: float
    terms: int | None
    bound: float | None
    chunk: int
    dtype: torch.dtype


def _compute_dtype(x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        return dtype
    if torch.float64 in (x.dtype, y.dtype):
        return torch.float64
    return torch.float32


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    for name, m in (("x", x), ("y", y)):
        if not isinstance(m, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor [neurons, samples], got {type(m).__name__}")
        if m.dim() != 2:
            raise ValueError(f"{name} must be 2-D [neurons, samples], got shape {tuple(m.shape)}")
        if m.shape[0] == 0:
            raise ValueError(f"{name} is an empty neuron set (0 rows): HSIC needs >= 1 neuron per set")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same number of samples, got {x.shape[1]} and {y.shape[1]}")
    if x.shape[1] < 2:
        raise ValueError(f"HSIC needs at least 2 probe samples (unbiased std), got N = {x.shape[1]}")


def standardize(m: torch.Tensor) -> torch.Tensor:
    """Rows to (x - mean) / (unbiased std + 1e-6), as the scripts; constant rows become exact zeros."""
    std, mean = torch.std_mean(m, dim=1, keepdim=True)
    lo, hi = torch.aminmax(m, dim=1, keepdim=True)
    out = (m - mean) / (std + 1e-6)
    return out.masked_fill_(lo == hi, 0.0)


def median_sigma(xs: torch.Tensor, ys: torch.Tensor) -> float:
    """The scripts' bandwidth on standardised rows: torch.median (lower middle) of both cdist matrices + 1e-6.

    Distances are taken in float64 (the GEMM form of cdist loses digits in float32) with the exact zeros of
    the diagonal kept exact, so sigma does not depend on the compute dtype.
    """
    parts = []
    for m in (xs, ys):
        m64 = m.to(torch.float64)
        d = torch.cdist(m64, m64)
        d.fill_diagonal_(0.0)
        parts.append(d.reshape(-1))
    return float(torch.median(torch.cat(parts)).item()) + 1e-6


def taylor_bound(t: float, terms: int) -> float:
    """Upper bound on |K - K_p| per kernel entry: Lagrange remainder of exp(ab/s^2), ``t^p/p! * e^t``."""
    if t <= 0.0:
        return 0.0
    log_b = terms * math.log(t) - math.lgamma(terms + 1) + t
    return math.inf if log_b > 700.0 else math.exp(log_b)


def taylor_terms(t: float, n_samples: int, dtype: torch.dtype, max_terms: int = TAYLOR_MAX_TERMS) -> int | None:
    """Smallest p whose HSIC error bound (8 N^2 * entry bound) is below the dtype's rounding at HSIC scale.

    The smallest meaningful HSIC value is ~1/(4N) (independent rows), so we ask for
    ``8 N^2 * bound <= eps * 1e-2 / (4N)``: truncation far below float rounding. None when p > max_terms.
    """
    eps = torch.finfo(dtype).eps
    target = eps * 1e-2 / (4.0 * n_samples) / (8.0 * n_samples**2)
    for p in range(1, max_terms + 1):
        if taylor_bound(t, p) <= target:
            return p
    return None


def _budget(device: torch.device, memory_bytes: int | None) -> int:
    if memory_bytes is not None:
        return max(int(memory_bytes), 1)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return max(int(free * 0.5), DEFAULT_MEMORY_BYTES)
    return DEFAULT_MEMORY_BYTES


def _exact_chunk(n_samples: int, itemsize: int, budget: int) -> int:
    # Per neuron in flight: the [N, N] centred kernel (built in place) + slack for a temporary; two sides.
    per = 2 * n_samples * n_samples * itemsize
    return max(1, budget // (2 * per))


def _taylor_chunk(terms: int, n_samples: int, itemsize: int, budget: int) -> int:
    # Per block: [c p, c p] GEMM output and two same-size temporaries, plus [c p, N] features each side.
    c = 1
    while True:
        nxt = c * 2
        need = 3 * (nxt * terms) ** 2 * itemsize + 2 * nxt * terms * n_samples * itemsize
        if need > budget or nxt > 1 << 16:
            return c
        c = nxt


def _centred_kernels(rows: torch.Tensor, sigma: float, double: bool) -> torch.Tensor:
    """[c, N, N] column-centred H E (E = K - 1 via expm1); doubly centred H E H when `double`."""
    d = rows.unsqueeze(2) - rows.unsqueeze(1)
    d.square_().mul_(-1.0 / (2.0 * sigma * sigma))
    e = torch.special.expm1(d, out=d)
    e.sub_(e.mean(dim=1, keepdim=True))
    if double:
        e.sub_(e.mean(dim=2, keepdim=True))
    return e


def _exact(xs: torch.Tensor, ys: torch.Tensor, sigma: float, chunk: int, hsic_variant: HsicVariant) -> torch.Tensor:
    n1, n2 = xs.shape[0], ys.shape[0]
    out = torch.empty(n1, n2, dtype=xs.dtype, device=xs.device)
    cka = hsic_variant == "cka"
    y_cache: list[torch.Tensor] | None = None
    if n2 <= chunk:  # the whole Y side fits next to one X chunk: build it once
        y_cache = [_flat(_centred_kernels(ys, sigma, cka), cka)]
    for i0 in range(0, n1, chunk):
        kx = _flat(_centred_kernels(xs[i0 : i0 + chunk], sigma, cka), cka)
        for jb, j0 in enumerate(range(0, n2, chunk)):
            ly = y_cache[jb] if y_cache is not None else _flat(_centred_kernels(ys[j0 : j0 + chunk], sigma, cka), cka)
            out[i0 : i0 + chunk, j0 : j0 + chunk] = kx @ ly.T
    return out


def _flat(k: torch.Tensor, normalise: bool) -> torch.Tensor:
    f = k.reshape(k.shape[0], -1)
    if normalise:
        norm = f.norm(dim=1, keepdim=True)
        f = torch.where(norm > 0, f / norm.clamp_min(torch.finfo(f.dtype).tiny), torch.zeros_like(f))
    return f


def _features(rows: torch.Tensor, sigma: float, terms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred Taylor features [c, p, N] and their uncentred column sums u [c, p]."""
    n = rows.shape[1]
    z = rows / sigma
    half = -0.5 * z * z
    feats = torch.empty(rows.shape[0], terms, n, dtype=rows.dtype, device=rows.device)
    feats[:, 0] = torch.special.expm1(half)  # phi_0 - 1: the constant is removed by centring anyway
    if terms > 1:
        # phi_k = exp(-z^2/2) z^k / sqrt(k!): cumulative product of z / sqrt(k) along k
        ks = torch.arange(1, terms, dtype=rows.dtype, device=rows.device)
        steps = z.unsqueeze(1) / ks.sqrt().view(1, -1, 1)
        feats[:, 1:] = torch.cumprod(steps, dim=1).mul_(torch.exp(half).unsqueeze(1))
    u = feats.sum(dim=2)
    u[:, 0] += n
    feats.sub_(feats.mean(dim=2, keepdim=True))
    return feats, u


def _taylor(
    xs: torch.Tensor, ys: torch.Tensor, sigma: float, terms: int, chunk: int, hsic_variant: HsicVariant
) -> torch.Tensor:
    n1, n2, n = xs.shape[0], ys.shape[0], xs.shape[1]
    p = terms
    fx, ux = _features(xs, sigma, p)
    fy, uy = _features(ys, sigma, p)
    cka = hsic_variant == "cka"
    if cka:  # ||HKH||_F = ||P~^T P~||_F
        nx = torch.linalg.matrix_norm(fx @ fx.transpose(1, 2))
        ny = torch.linalg.matrix_norm(fy @ fy.transpose(1, 2))
    out = torch.empty(n1, n2, dtype=xs.dtype, device=xs.device)
    for i0 in range(0, n1, chunk):
        a = fx[i0 : i0 + chunk]
        ci = a.shape[0]
        a2 = a.reshape(ci * p, n)
        for j0 in range(0, n2, chunk):
            b = fy[j0 : j0 + chunk]
            cj = b.shape[0]
            m = (a2 @ b.reshape(cj * p, n).T).view(ci, p, cj, p)
            if cka:
                block = m.square().sum(dim=(1, 3))
            else:
                uv = ux[i0 : i0 + ci].view(ci, p, 1, 1) * uy[j0 : j0 + cj].view(1, 1, cj, p) / n
                block = (m * (m + uv)).sum(dim=(1, 3))
            out[i0 : i0 + ci, j0 : j0 + cj] = block
    if cka:
        denom = nx.unsqueeze(1) * ny.unsqueeze(0)
        tiny = torch.finfo(out.dtype).tiny
        out = torch.where(denom > 0, out / denom.clamp_min(tiny), torch.zeros_like(out))
    return out


def plan(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float | None = None,
    *,
    dtype: torch.dtype | None = None,
    chunk: int | None = None,
    method: Method = "auto",
    memory_bytes: int | None = None,
) -> tuple[HSICPlan, torch.Tensor, torch.Tensor]:
    """Validate, standardise, pick sigma, method, Taylor terms, chunk; also returns the standardised rows."""
    _check(x, y)
    if method not in ("auto", "exact", "taylor"):
        raise ValueError(f"method must be 'auto', 'exact' or 'taylor', got {method!r}")
    cd = _compute_dtype(x, y, dtype)
    dev = x.device
    xs = standardize(x.to(device=dev, dtype=cd))
    ys = standardize(y.to(device=dev, dtype=cd))
    if sigma is None:
        sigma = median_sigma(xs, ys)
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    n = xs.shape[1]
    itemsize = torch.finfo(cd).bits // 8
    budget = _budget(dev, memory_bytes)
    chosen: Literal["exact", "taylor"] = "exact"
    terms: int | None = None
    bound: float | None = None
    if method != "exact":
        t = float(torch.maximum(xs.abs().amax(), ys.abs().amax()).item()) ** 2 / sigma**2
        terms = taylor_terms(t, n, cd)
        if terms is not None:
            bound = 8.0 * n * n * taylor_bound(t, terms)
            # "auto" takes the factorised form only when it is also cheaper (p^2 work vs N).
            if method == "taylor" or terms * terms < n:
                chosen = "taylor"
    if chosen == "exact":
        terms, bound = None, None
    if chunk is None:
        chunk = _taylor_chunk(terms, n, itemsize, budget) if terms else _exact_chunk(n, itemsize, budget)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return HSICPlan(chosen, sigma, terms, bound, int(chunk), cd), xs, ys


def _matrix(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float | None,
    hsic_variant: HsicVariant,
    dtype: torch.dtype | None,
    chunk: int | None,
    method: Method,
    memory_bytes: int | None,
) -> torch.Tensor:
    pl, xs, ys = plan(x, y, sigma, dtype=dtype, chunk=chunk, method=method, memory_bytes=memory_bytes)
    with torch.no_grad():
        if pl.method == "taylor":
            assert pl.terms is not None
            return _taylor(xs, ys, pl.sigma, pl.terms, pl.chunk, hsic_variant)
        return _exact(xs, ys, pl.sigma, pl.chunk, hsic_variant)


def hsic_matrix(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float | None = None,
    *,
    dtype: torch.dtype | None = None,
    chunk: int | None = None,
    method: Method = "auto",
    memory_bytes: int | None = None,
) -> torch.Tensor:
    """HSIC_ij = trace(K_i H L_j) for x: [n1, N], y: [n2, N] (reference variant); returns [n1, n2].

    Runs on x's device (y is moved there). dtype: compute dtype (default float64 if an input is float64,
    else float32). chunk: neurons per chunk (default from `memory_bytes`, 512 MiB on CPU, half the free
    memory on CUDA). method: "exact", "taylor" (falls back to exact when its bound is not small) or "auto"
    (taylor when safe and cheaper). sigma: bandwidth; None = the scripts' median heuristic.
    """
    return _matrix(x, y, sigma, "reference", dtype, chunk, method, memory_bytes)


def cka_matrix(
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float | None = None,
    *,
    dtype: torch.dtype | None = None,
    chunk: int | None = None,
    method: Method = "auto",
    memory_bytes: int | None = None,
) -> torch.Tensor:
    """<HK_iH, HL_jH>_F / (||HK_iH||_F ||HL_jH||_F) per pair (0 where a kernel centres to zero); [n1, n2].

    Normalised, so scores are comparable across candidates whose sigma differs (raw HSIC is not).
    """
    return _matrix(x, y, sigma, "cka", dtype, chunk, method, memory_bytes)


def max_mean(m: torch.Tensor) -> float:
    """Step 5.5: ½ (mean_i max_j m_ij + mean_j max_i m_ij)."""
    a = m.max(dim=1).values.mean().item()
    b = m.max(dim=0).values.mean().item()
    return float((a + b) / 2.0)


def layer_score(
    x: torch.Tensor,
    y: torch.Tensor,
    hsic_variant: HsicVariant = "reference",
    sigma: float | None = None,
    *,
    dtype: torch.dtype | None = None,
    chunk: int | None = None,
    method: Method = "auto",
    memory_bytes: int | None = None,
) -> float:
    """S_l = ½ (mean_i max_j + mean_j max_i) of the HSIC matrix ("reference") or of the CKA matrix ("cka")."""
    if hsic_variant == "reference":
        m = hsic_matrix(x, y, sigma, dtype=dtype, chunk=chunk, method=method, memory_bytes=memory_bytes)
    elif hsic_variant == "cka":
        m = cka_matrix(x, y, sigma, dtype=dtype, chunk=chunk, method=method, memory_bytes=memory_bytes)
    else:
        raise ValueError(f"hsic_variant must be 'reference' or 'cka', got {hsic_variant!r}")
    return max_mean(m)


__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "HSICPlan",
    "HsicVariant",
    "cka_matrix",
    "hsic_matrix",
    "layer_score",
    "max_mean",
    "median_sigma",
    "plan",
    "standardize",
    "taylor_bound",
    "taylor_terms",
]
