"""Duration sketches: 1% accuracy against exact percentiles, exact round trips, merges equal to the union, size,
and the adapter pinned: the same bins and quantiles as a DDSketch fed the same values."""

from __future__ import annotations

import math
import random

import orjson
import pytest
from ddsketch import DDSketch
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.sketch import Sketch, from_compact, quantiles, to_compact

QS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def sketch_of(values) -> Sketch:
    s = Sketch()
    for v in values:
        s.add(v)
    return s


def exact_quantile(sorted_values: list[float], q: float) -> float:
    """The value DDSketch approximates: the element of rank floor(q * (n - 1)) (lower quantile)."""
    return sorted_values[math.floor(q * (len(sorted_values) - 1))]


def roundtrip(s: Sketch) -> Sketch:
    return from_compact(orjson.loads(orjson.dumps(to_compact(s))))


R = random.Random(20240611)
DISTRIBUTIONS = {
    "uniform_10ms_10min": [R.uniform(10, 600_000) for _ in range(10_000)],
    "log_uniform_10ms_10min": [math.exp(R.uniform(math.log(10), math.log(600_000))) for _ in range(10_000)],
    "lognormal": [R.lognormvariate(7, 1.8) for _ in range(5_000)],
    "exponential": [R.expovariate(1 / 800) for _ in range(5_000)],
    "pareto_heavy_tail": [10 * R.paretovariate(1.1) for _ in range(5_000)],
    "bimodal": [R.gauss(50, 5) if R.random() < 0.7 else R.gauss(30_000, 2_000) for _ in range(5_000)],
    "integers": [R.randint(1, 5_000) for _ in range(3_000)],
    "constant": [1234.0] * 100,
    "single": [42.0],
    "with_zeros": [0.0] * 50 + [R.uniform(1, 100) for _ in range(200)],
}


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_quantiles_within_one_percent_of_exact(name):
    values = DISTRIBUTIONS[name]
    s = sketch_of(values)
    ordered = sorted(values)
    for q in QS:
        want = exact_quantile(ordered, q)
        got = quantiles(s, (q,))[q]
        assert abs(got - want) <= 0.01 * abs(want) + 1e-12, (name, q, got, want)
    assert s.count == len(values)
    assert s.min == ordered[0] and s.max == ordered[-1]
    assert math.isclose(s.sum, math.fsum(values), rel_tol=1e-9)


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_roundtrip_is_exact(name):
    s = sketch_of(DISTRIBUTIONS[name])
    back = roundtrip(s)
    for q in QS:
        assert back.get_quantile_value(q) == s.get_quantile_value(q)
    assert (back.count, back.sum, back.min, back.max, back.zero) == (s.count, s.sum, s.min, s.max, s.zero)
    assert to_compact(back) == to_compact(s)


def test_quantiles_are_clamped_to_exact_min_max_and_none_when_empty():
    s = sketch_of([100.0, 100.0, 100.0])
    assert quantiles(s, (0.0, 0.99, 1.0)) == {0.0: 100.0, 0.99: 100.0, 1.0: 100.0}
    assert quantiles(Sketch(), (0.5,)) == {}


def test_empty_sketch_roundtrip():
    c = to_compact(Sketch())
    assert c == {"n": 0}
    back = from_compact(c)
    assert back.count == 0 and back.get_quantile_value(0.5) is None
    assert from_compact({}).count == 0
    back.add(5.0)
    assert back.count == 1 and back.min == back.max == 5.0


def test_negative_and_zero_values_roundtrip():
    s = sketch_of([-50.0, -3.0, 0.0, 0.0, 7.0, 900.0])
    c = to_compact(s)
    assert c["z"] == 2 and "nb" in c and "b" in c
    back = roundtrip(s)
    for q in QS:
        assert back.get_quantile_value(q) == s.get_quantile_value(q)
    assert to_compact(back) == c


def test_size_of_10k_durations_10ms_to_10min():
    for name in ("uniform_10ms_10min", "log_uniform_10ms_10min"):
        size = len(orjson.dumps(to_compact(sketch_of(DISTRIBUTIONS[name]))))
        print(f"{name}: {size} bytes")
        assert size <= 2048, (name, size)


def test_sparse_bins_are_run_length_encoded():
    s = sketch_of([10.0, 600_000.0])  # two bins ~550 keys apart
    c = to_compact(s)
    assert c["b"][0] == 1 and c["b"][-1] == 1 and len(c["b"]) == 3 and c["b"][1] < 0
    assert len(orjson.dumps(c)) < 100
    assert roundtrip(s).get_quantile_value(1.0) == s.get_quantile_value(1.0)


def test_weights_that_are_not_integral_survive():
    s = Sketch()
    s.add(10.0, 0.5)
    s.add(20.0, 2.25)
    back = roundtrip(s)
    assert to_compact(back) == to_compact(s)
    assert back.count == 2.75


@pytest.mark.parametrize("extra", [[1.0, 2.0], [5e6, 1e7], [0.001, 9e9], [55.0]])
def test_adding_after_decoding_equals_adding_before(extra):
    base = DISTRIBUTIONS["lognormal"][:500]
    back = roundtrip(sketch_of(base))
    for v in extra:
        back.add(v)
    assert to_compact(back) == to_compact(sketch_of(base + extra))


def test_merged_sketches_equal_a_sketch_of_the_union():
    values = DISTRIBUTIONS["integers"]
    parts = [values[:1000], values[1000:1001], values[1001:2500], values[2500:]]
    merged = Sketch()
    for p in parts:
        merged.merge(sketch_of(p))
    assert to_compact(merged) == to_compact(sketch_of(values))
    # through the encoded form, as the sink merges partials
    merged2 = Sketch()
    for p in reversed(parts):
        merged2.merge(roundtrip(sketch_of(p)))
    assert to_compact(merged2) == to_compact(sketch_of(values))


def test_merged_float_sketches_have_the_union_bins_and_quantiles():
    values = DISTRIBUTIONS["lognormal"]
    a, b = sketch_of(values[:1234]), sketch_of(values[1234:])
    a.merge(b)
    whole = sketch_of(values)
    ca, cw = to_compact(a), to_compact(whole)
    assert math.isclose(ca.pop("s"), cw.pop("s"), rel_tol=1e-12)  # float sums differ only by rounding
    assert ca == cw
    for q in QS:
        assert a.get_quantile_value(q) == whole.get_quantile_value(q)


def test_merge_into_empty_does_not_alias():
    src = sketch_of([1.0, 2.0, 3.0])
    dst = Sketch()
    dst.merge(src)
    dst.add(1000.0)
    assert src.count == 3 and to_compact(src) == to_compact(sketch_of([1.0, 2.0, 3.0]))


def test_only_our_sketches_are_encoded():
    with pytest.raises(ValueError):
        to_compact(DDSketch(0.01))


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_same_bins_and_quantiles_as_a_ddsketch_fed_the_same_values(name):
    """The adapter's pin: our bins are DDSketch(0.01)'s bins, and the quantiles read through ddsketch's public
    API from them are the ones a DDSketch fed the same values gives."""
    values = DISTRIBUTIONS[name] + [-3.5, -1200.0] * (name == "with_zeros")
    ours, theirs = sketch_of(values), DDSketch(0.01)
    for v in values:
        theirs.add(v)
    for q in QS:
        assert ours.get_quantile_value(q) == theirs.get_quantile_value(q), (name, q)
    assert ours.count == theirs.count and ours.sum == theirs.sum
    assert ours.as_ddsketch().get_quantile_value(0.5) == theirs.get_quantile_value(0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3_600_000), min_size=1, max_size=200),
       st.lists(st.integers(min_value=0, max_value=200), max_size=4), st.randoms())
def test_any_split_and_order_of_merges_gives_the_union(values, cuts, rnd):
    bounds = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    parts = [values[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    rnd.shuffle(parts)
    merged = Sketch()
    for p in parts:
        merged.merge(roundtrip(sketch_of(p)))
    assert to_compact(merged) == to_compact(sketch_of(values))


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_quantiles_read_from_the_bins_equal_ddsketchs_own(name):
    """quantiles() reads the bins itself: the same values as DDSketch, fed the values or rebuilt from the bins,
    clamped to the exact min/max (negative and zero values included)."""
    values = DISTRIBUTIONS[name] + [-3.5, -1200.0, -1200.0] * (name == "with_zeros")
    s, fed = sketch_of(values), DDSketch(0.01)
    for v in values:
        fed.add(v)
    clamp = lambda v: min(max(v, s.min), s.max)  # noqa: E731
    assert quantiles(s, QS) == {q: clamp(fed.get_quantile_value(q)) for q in QS}
    assert quantiles(s, QS) == {q: clamp(s.as_ddsketch().get_quantile_value(q)) for q in QS}
    assert quantiles(Sketch(), QS) == {}


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e7, allow_nan=False), min_size=1, max_size=300),
       st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=6))
def test_quantiles_equal_ddsketch_for_any_values(values, qs):
    s, fed = sketch_of(values), DDSketch(0.01)
    for v in values:
        fed.add(v)
    assert quantiles(s, qs) == {q: min(max(fed.get_quantile_value(q), s.min), s.max) for q in qs}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e7, allow_nan=False), max_size=100),
       st.lists(st.floats(min_value=-1e6, max_value=1e7, allow_nan=False), max_size=100))
def test_merging_an_encoded_sketch_equals_merging_the_decoded_one(a, b):
    direct, decoded = sketch_of(a), sketch_of(a)
    direct.merge_compact(to_compact(sketch_of(b)))
    decoded.merge(from_compact(to_compact(sketch_of(b))))
    assert to_compact(direct) == to_compact(decoded)
