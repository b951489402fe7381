"""EAP, MAP and MLE with category responses on mixed pools, against independent scalar checks:
adaptive quadrature over the whole real line (EAP) and a scalar optimiser (MAP, MLE) on a
log-likelihood written here from the model definitions, not from qbank.polytomous."""

import math

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from qbank import EAP, MAP, MLE, generate_pool
from qbank.pool import ItemPool
from qbank.rules import audit_test, rules_from_settings, run_test
from qbank.stopping import FixedLength


def _item_log_probability(theta, model, a, b, c, D, steps, k):
    """log P(X = k | theta) of one item, straight from Samejima (1969) / Muraki (1992) / the 3PL."""
    k = int(k)
    if model == "":
        p = c + (1 - c) * special.expit(D * a * (theta - b))
        p = p if k == 1 else 1 - p
        return math.log(p) if p > 0 else -math.inf
    if model == "GRM":
        star = [1.0] + [special.expit(D * a * (theta - s)) for s in steps] + [0.0]
        p = star[k] - star[k + 1]
        return math.log(p) if p > 0 else -math.inf
    z = [0.0]
    for s in steps:
        z.append(z[-1] + D * a * (theta - s))
    top = max(z)
    return z[k] - top - math.log(sum(math.exp(v - top) for v in z))


def _loglik(theta, items, pattern):
    return sum(_item_log_probability(theta, *item, k) for item, k in zip(items, pattern) if not np.isnan(k))


def _items():
    """Three GRM items (4 categories), three GPCM items (3 and 4 categories, one reversal), three 3PL."""
    return [
        ("GRM", 1.4, None, 0.0, 1.0, (-1.2, 0.1, 1.3), None),
        ("GRM", 0.9, None, 0.0, 1.702, (-0.5, 0.4, 2.0), None),
        ("GRM", 2.1, None, 0.0, 1.0, (-2.0, -1.1, 0.0), None),
        ("GPCM", 1.1, None, 0.0, 1.0, (0.6, -0.4), None),
        ("GPCM", 0.7, None, 0.0, 1.0, (-1.0, 0.2, 1.5), None),
        ("GPCM", 1.6, None, 0.0, 1.0, (1.8, 0.9, 2.4), None),
        ("", 1.2, 0.3, 0.2, 1.0, (), None),
        ("", 0.8, -1.1, 0.0, 1.0, (), None),
        ("", 1.9, 1.6, 0.15, 1.0, (), None),
    ]


def _pool_and_items():
    spec = _items()
    width = max(len(item[5]) for item in spec)
    thresholds = np.array([list(item[5]) + [np.nan] * (width - len(item[5])) for item in spec])
    b = np.array([np.nan if item[2] is None else item[2] for item in spec])
    pool = ItemPool.from_arrays(
        [item[1] for item in spec],
        b,
        [item[3] for item in spec],
        D=[item[4] for item in spec],
        model=[item[0] for item in spec],
        thresholds=thresholds,
    )
    # the scalar items carry the pool's own b (a polytomous item's location is unused by its model)
    scalar = [(item[0], item[1], pool.b[i], item[3], item[4], item[5]) for i, item in enumerate(spec)]
    return pool, scalar


def _patterns(pool):
    """All-lowest, all-highest, every item in its middle category, and random patterns, some padded."""
    top = pool.n_categories - 1
    rng = np.random.default_rng(5)
    random = [rng.integers(0, top + 1).astype(float) for _ in range(6)]
    random[0][[0, 2]] = np.nan  # items not administered
    random[1][:] = np.nan
    random[1][1] = top[1]  # one answer alone
    return np.array([np.zeros(pool.n_items), top.astype(float), (top // 2).astype(float), *random])


def _gathered(pool, n_rows):
    return dict(
        a=np.broadcast_to(pool.a, (n_rows, pool.n_items)),
        b=np.broadcast_to(pool.b, (n_rows, pool.n_items)),
        c=np.broadcast_to(pool.c, (n_rows, pool.n_items)),
        D=np.broadcast_to(pool.D, (n_rows, pool.n_items)),
        model=np.broadcast_to(pool.item_model, (n_rows, pool.n_items)),
        thresholds=np.broadcast_to(pool.thresholds, (n_rows, *pool.thresholds.shape)),
    )


def _call(estimator, pool, patterns):
    args = _gathered(pool, patterns.shape[0])
    return estimator.estimate(
        args["a"],
        args["b"],
        args["c"],
        args["D"],
        patterns,
        model=args["model"],
        thresholds=args["thresholds"],
    )


@pytest.mark.parametrize("subset", ["mixed", "grm", "gpcm"])
def test_eap_with_categories_agrees_with_whole_line_integration(subset):
    pool, scalar = _pool_and_items()
    keep = {"mixed": slice(None), "grm": slice(0, 3), "gpcm": slice(3, 6)}[subset]
    positions = np.arange(pool.n_items)[keep]
    pool, scalar = pool.subset(positions), scalar[keep]
    patterns = _patterns(pool)
    theta, se = _call(EAP(), pool, patterns)
    opts = dict(epsabs=0, epsrel=1e-11, limit=200)
    for row, pattern in enumerate(patterns):

        def weight(t, pattern=pattern):
            return math.exp(_loglik(t, scalar, pattern) + stats.norm.logpdf(t))

        z = integrate.quad(weight, -np.inf, np.inf, **opts)[0]
        mean = integrate.quad(lambda t: t * weight(t), -np.inf, np.inf, **opts)[0] / z
        var = integrate.quad(lambda t: (t - mean) ** 2 * weight(t), -np.inf, np.inf, **opts)[0] / z
        assert theta[row] == pytest.approx(mean, abs=1e-4), (subset, row)
        assert se[row] == pytest.approx(math.sqrt(var), abs=1e-4), (subset, row)


def test_eap_of_extreme_category_patterns_widens_the_grid():
    """Ten steep GRM items far out: the all-highest posterior sits past the base grid's end."""
    thresholds = np.tile([3.5, 4.5, 5.5], (10, 1))
    pool = ItemPool.from_arrays(
        np.full(10, 2.5), np.full(10, np.nan), model=["GRM"] * 10, thresholds=thresholds
    )
    scalar = [("GRM", 2.5, pool.b[0], 0.0, 1.0, (3.5, 4.5, 5.5))] * 10
    pattern = np.full((1, 10), 3.0)
    theta, _ = _call(EAP(n_points=61, grid_min=-4, grid_max=4), pool, pattern)

    def weight(t):
        return math.exp(_loglik(t, scalar, pattern[0]) + stats.norm.logpdf(t))

    opts = dict(epsabs=0, epsrel=1e-11, limit=200)
    z = integrate.quad(weight, -np.inf, np.inf, **opts)[0]
    mean = integrate.quad(lambda t: t * weight(t), -np.inf, np.inf, **opts)[0] / z
    assert mean > 4.0 and theta[0] == pytest.approx(mean, abs=1e-4)


def test_map_and_mle_with_categories_match_a_scalar_optimiser():
    pool, scalar = _pool_and_items()
    patterns = _patterns(pool)[2:]  # the constant patterns have no finite MLE
    theta_map, se_map = _call(MAP(bounds=(-5, 5)), pool, patterns)
    theta_mle, _ = _call(MLE(bounds=(-5, 5)), pool, patterns)
    for row, pattern in enumerate(patterns):
        best_map = optimize.minimize_scalar(
            lambda t, p=pattern: -(_loglik(t, scalar, p) + stats.norm.logpdf(t)),
            bounds=(-5, 5),
            method="bounded",
            options={"xatol": 1e-10},
        ).x
        best_mle = optimize.minimize_scalar(
            lambda t, p=pattern: -_loglik(t, scalar, p),
            bounds=(-5, 5),
            method="bounded",
            options={"xatol": 1e-10},
        ).x
        assert theta_map[row] == pytest.approx(best_map, abs=1e-4), row
        if -4.99 < best_mle < 4.99:
            assert theta_mle[row] == pytest.approx(best_mle, abs=1e-4), row
    assert np.all(se_map > 0) and np.all(np.isfinite(se_map))


def test_mle_of_constant_category_patterns_ends_at_a_bound():
    pool, _ = _pool_and_items()
    patterns = _patterns(pool)[:2]
    theta, _ = _call(MLE(bounds=(-4, 4)), pool, patterns)
    np.testing.assert_allclose(theta, [-4.0, 4.0])
    theta, se = _call(MLE(bounds=(-4, 4), dodd=True, b_range=(-2.0, 3.0)), pool, patterns)
    n = pool.n_items
    np.testing.assert_allclose(theta, [-2.0 + 2.0 / 2**n, 3.0 - 3.0 / 2**n])
    assert np.all(np.isfinite(se))


def test_a_dichotomous_pool_through_the_category_path_is_unchanged():
    """model all DICHOTOMOUS takes the 3PL path: bit for bit what the call without it gives."""
    pool = generate_pool(20, rng=1)
    rng = np.random.default_rng(2)
    resp = (rng.random((4, 20)) < 0.5).astype(float)
    params = [np.broadcast_to(x, resp.shape) for x in (pool.a, pool.b, pool.c, pool.D)]
    for estimator in (EAP(), MAP(), MLE()):
        plain = estimator.estimate(*params, resp)
        tagged = estimator.estimate(
            *params, resp, model=np.zeros(resp.shape, np.int8), thresholds=np.full((*resp.shape, 1), np.nan)
        )
        np.testing.assert_array_equal(plain, tagged)


def test_a_response_outside_the_categories_is_refused():
    pool, _ = _pool_and_items()
    patterns = _patterns(pool)[:1].copy()
    patterns[0, 3] = 3.0  # the 3-category GPCM item scores 0..2
    with pytest.raises(ValueError, match=r"category scores 0 .. m-1.*answer 3: 3 \(item with 3 categories\)"):
        _call(EAP(), pool, patterns)
    patterns[0, 3] = 1.5
    with pytest.raises(ValueError, match="category scores"):
        _call(MAP(), pool, patterns)
    with pytest.raises(ValueError, match="thresholds are required with model"):
        EAP().estimate(
            pool.a[None], pool.b[None], pool.c[None], pool.D[None], patterns, model=pool.item_model[None]
        )
    rules = rules_from_settings()
    with pytest.raises(ValueError, match=r"bad items: \['I0007: 2 \(scores 0..1\)'\]"):
        rules.estimate(pool, [0, 6], [3, 2])
    with pytest.raises(ValueError, match=r"I0004: -1"):
        rules.estimate(pool, [3], [-1])


def test_rules_estimate_and_a_test_with_category_scores():
    pool = generate_pool(80, rng=8, polytomous_share=0.4, polytomous_model="GPCM", n_categories=4)
    rules = rules_from_settings("max_info", stopping=FixedLength(10))
    items = [int(np.flatnonzero(pool.model_codes == 2)[0]), int(np.flatnonzero(pool.model_codes == 0)[0])]
    theta, se = rules.estimate(pool, items, [3, 1])
    direct = EAP().estimate(
        pool.a[items][None],
        pool.b[items][None],
        pool.c[items][None],
        pool.D[items][None],
        np.array([[3.0, 1.0]]),
        model=pool.item_model[items][None],
        thresholds=pool.thresholds[items][None],
    )
    assert (theta, se) == (direct[0][0], direct[1][0])
    top = pool.n_categories - 1

    def answer(position, item):
        return int(top[item]) if position % 2 else 0

    record = run_test(rules, pool, "poly-1", answer)
    assert len(record.items) == 10 and record.responses[1] == top[record.items[1]]
    assert np.all(np.isfinite(record.theta_after))
    audit = audit_test(
        rules, pool, "poly-1", record.items, record.responses, record.theta_after, record.se_after
    )
    assert audit == {"identical": True, "positions": 10}
    changed = list(record.responses)
    changed[4] = 1 if top[record.items[4]] > 1 else changed[4] ^ 1
    assert (
        audit_test(rules, pool, "poly-1", record.items, changed, record.theta_after, record.se_after)[
            "identical"
        ]
        is False
    )
