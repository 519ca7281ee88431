"""The normal generator of crossbar.gaussian against slow, obvious references."""

import math
import warnings

import numpy as np
import pytest
from numba.core.errors import TypingError
from scipy import stats

from crossbar import gaussian
from crossbar.gaussian import fill_normal, new_state, normal, seed_state

MASK = (1 << 64) - 1
N = gaussian.N_LAYERS


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & MASK


def _splitmix64(x: int) -> tuple[int, int]:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31), x


class _RefXoshiro:
    """xoshiro256++ as published, on Python integers masked to 64 bits."""

    def __init__(self, seed: int):
        self.s = []
        x = seed & MASK
        for _ in range(4):
            z, x = _splitmix64(x)
            self.s.append(z)

    def next(self) -> int:
        s = self.s
        result = (_rotl((s[0] + s[3]) & MASK, 23) + s[0]) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result


def _ref_normal(gen: _RefXoshiro, counts: dict) -> float:
    """Marsaglia & Tsang's ziggurat written out plainly with the module tables."""
    x_edge = gaussian._ZIG_X
    f_edge = gaussian._ZIG_F
    r = gaussian.ZIG_R
    while True:
        bits = gen.next()
        i = bits & 127
        sign = -1.0 if (bits >> 7) & 1 else 1.0
        x = float(bits >> 11) * (x_edge[i] * 2.0**-53)
        if x < x_edge[i + 1]:
            counts["fast"] += 1
            return sign * x
        if i == 0:
            counts["tail"] += 1
            while True:
                u1 = float((gen.next() >> 11) + 1) * 2.0**-53
                u2 = float((gen.next() >> 11) + 1) * 2.0**-53
                xt = -math.log(u1) / r
                if -math.log(u2) * 2.0 > xt * xt:
                    return sign * (r + xt)
        u = float(gen.next() >> 11) * 2.0**-53
        y = f_edge[i] + u * (f_edge[i + 1] - f_edge[i])
        if y < math.exp(-0.5 * x * x):
            counts["wedge"] += 1
            return sign * x
        counts["rejected"] += 1


def test_tables_are_the_published_ziggurat():
    # Marsaglia & Tsang (2000), 128 layers: r = 3.442619855899, v = 9.91256303526217e-3.
    assert gaussian.ZIG_R == pytest.approx(3.442619855899, rel=1e-11)
    assert gaussian.ZIG_V == pytest.approx(9.91256303526217e-3, rel=1e-10)
    x, f, v, r = gaussian._ZIG_X, gaussian._ZIG_F, gaussian.ZIG_V, gaussian.ZIG_R
    assert x[1] == r and x[N] == 0.0 and np.all(np.diff(x) < 0)
    # Every layer has the area v: rectangles above, base strip with its tail.
    areas = x[1:N] * (f[2:] - f[1:N])
    np.testing.assert_allclose(areas, v, rtol=1e-10)
    tail = math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
    assert x[0] * math.exp(-0.5 * r * r) == pytest.approx(v, rel=1e-14)
    assert r * math.exp(-0.5 * r * r) + tail == pytest.approx(v, rel=1e-14)


@pytest.mark.kernel
def test_splitmix_and_xoshiro_match_the_reference_bit_for_bit():
    from crossbar.gaussian import splitmix64, xoshiro_next

    # The well-known first splitmix64 output for seed 0.
    assert int(splitmix64(np.uint64(0))[0]) == 0xE220A8397B1DCDAF
    for seed in (0, 1, 12345, 2**63 + 17, MASK):
        ref = _RefXoshiro(seed)
        state = new_state(seed)
        assert [int(w) for w in state] == ref.s
        s = [np.uint64(w) for w in state]
        for _ in range(40):
            out, *s = xoshiro_next(*s)
            assert int(out) == ref.next()
            s = [np.uint64(w) for w in s]  # jitted code returns Python ints


@pytest.mark.kernel
def test_draws_match_the_reference_ziggurat_bit_for_bit():
    # Seed and length chosen so that every path occurs: fast, wedge, rejected
    # wedge and tail.
    n = 3000
    ref = _RefXoshiro(7)
    counts = {"fast": 0, "wedge": 0, "tail": 0, "rejected": 0}
    expect = np.array([_ref_normal(ref, counts) for _ in range(n)])
    assert min(counts.values()) > 0, counts
    got = np.empty(n)
    fill_normal(new_state(7), got)
    np.testing.assert_array_equal(got.view(np.int64), expect.view(np.int64))


@pytest.mark.kernel
def test_normal_and_fill_normal_agree_and_leave_the_same_state():
    a = new_state(11)
    b = new_state(11)
    one_by_one = np.array([normal(a) for _ in range(60)]).reshape(3, 4, 5)
    filled = np.empty((3, 4, 5))
    fill_normal(b, filled)
    np.testing.assert_array_equal(filled, one_by_one)
    np.testing.assert_array_equal(a, b)
    # A ValueError in plain Python, a typing error when jitted.
    with pytest.raises((ValueError, TypingError), match="contiguous"):
        fill_normal(b, np.empty((4, 6))[:, ::2])


@pytest.mark.kernel
def test_same_seed_same_numbers_other_seeds_differ():
    draws = {}
    for seed in (1, 2, 2**64 - 1):
        out = np.empty(50)
        fill_normal(new_state(seed), out)
        again = np.empty(50)
        fill_normal(new_state(seed), again)
        np.testing.assert_array_equal(out, again)
        draws[seed] = out
    assert not np.any(draws[1] == draws[2])
    assert not np.any(draws[1] == draws[2**64 - 1])
    # Seeds are taken modulo 2**64.
    np.testing.assert_array_equal(new_state(-1), new_state(2**64 - 1))
    state = np.empty(4, dtype=np.uint64)
    seed_state(state, 5)
    np.testing.assert_array_equal(state, new_state(5))


@pytest.mark.kernel
def test_no_overflow_warnings_in_plain_python():
    # numpy warns on uint64 scalar overflow; the generator must not, also when
    # run as plain Python (NUMBA_DISABLE_JIT=1).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = new_state(2**64 - 1)
        for _ in range(20):
            normal(state)
        fill_normal(state, np.empty(200))


def _many(n: int, seed: int = 2024) -> np.ndarray:
    out = np.empty(n)
    fill_normal(new_state(seed), out)
    return out


def test_moments_within_confidence_bounds():
    n = 1 << 21
    z = _many(n)
    # Five standard errors: mean 1/sqrt(n), variance sqrt(2/n), E z^4 sqrt(96/n).
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3.0) < 5 * math.sqrt(96 / n)
    assert abs(np.mean(z > 0) - 0.5) < 5 * 0.5 / math.sqrt(n)


def test_ks_against_the_normal_law():
    z = _many(200_000, seed=99)
    assert stats.kstest(z, stats.norm.cdf).pvalue > 1e-3


def test_tail_and_wedges_follow_the_normal_law():
    n = 1 << 22
    a = np.abs(_many(n, seed=5))
    # Beyond the base strip's edge r = 3.4426: only the tail algorithm lands here.
    p_tail = math.erfc(gaussian.ZIG_R / math.sqrt(2))
    hits = np.count_nonzero(a >= gaussian.ZIG_R)
    assert abs(hits - n * p_tail) < 5 * math.sqrt(n * p_tail)
    far = np.count_nonzero(a >= 4.5)
    p_far = math.erfc(4.5 / math.sqrt(2))
    assert abs(far - n * p_far) < 5 * math.sqrt(n * p_far) + 1
    # Bins between consecutive layer edges: each holds one layer's wedge.
    edges = np.concatenate([gaussian._ZIG_X[N:0:-1], [np.inf]])
    counts = np.histogram(a, bins=edges)[0]
    probs = np.diff(2 * stats.norm.cdf(edges) - 1)
    chi2 = np.sum((counts - n * probs) ** 2 / (n * probs))
    assert stats.chi2.sf(chi2, len(counts) - 1) > 1e-3
    # One wedge alone: layer 64, between x[65] and x[64].
    lo, hi = gaussian._ZIG_X[65], gaussian._ZIG_X[64]
    p = 2 * (stats.norm.cdf(hi) - stats.norm.cdf(lo))
    inside = np.count_nonzero((a >= lo) & (a < hi))
    assert abs(inside - n * p) < 5 * math.sqrt(n * p)
