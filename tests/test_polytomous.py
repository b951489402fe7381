"""GRM and GPCM kernels (qbank.polytomous) and mixed pools (qbank.pool)."""

import numpy as np
import pandas as pd
import pytest

from qbank import irt
from qbank import polytomous as poly
from qbank.pool import ItemPool, PoolError, generate_pool, load_pool, save_pool

THETA = np.linspace(-6.0, 6.0, 121)


def _mixed_pool():
    return generate_pool(60, "3PL", rng=3, polytomous_share=0.5, polytomous_model="GRM", n_categories=5)


@pytest.mark.parametrize("kernel", [poly.grm_probabilities, poly.gpcm_probabilities])
def test_category_probabilities_sum_to_one_and_pad_with_zero(kernel):
    thresholds = np.array([[-1.0, 0.2, 1.5], [-0.5, 0.5, np.nan], [0.3, np.nan, np.nan]])
    p = kernel(THETA[:, None], np.array([1.3, 0.7, 2.0]), thresholds, 1.0)
    assert p.shape == (THETA.size, 3, 4)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    assert np.all(p >= 0)
    assert np.all(p[:, 1, 3] == 0) and np.all(p[:, 2, 2:] == 0)


@pytest.mark.parametrize("kernel", [poly.grm_probabilities, poly.gpcm_probabilities])
def test_two_categories_equal_the_2pl(kernel):
    a, b, D = np.array([0.6, 1.4, 2.2]), np.array([-1.2, 0.0, 2.5]), 1.702
    p = kernel(THETA[:, None], a, b[:, None], D)
    np.testing.assert_allclose(p[..., 1], irt.probability(THETA, a, b, 0.0, D), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", [poly.grm_information, poly.gpcm_information])
def test_two_category_information_equals_the_2pl(kernel):
    a, b = np.array([0.6, 1.4]), np.array([-1.2, 0.7])
    np.testing.assert_allclose(
        kernel(THETA[:, None], a, b[:, None], 1.0), irt.information(THETA, a, b), rtol=1e-10, atol=1e-14
    )


@pytest.mark.parametrize(
    ("probabilities", "information"),
    [(poly.grm_probabilities, poly.grm_information), (poly.gpcm_probabilities, poly.gpcm_information)],
)
def test_information_against_a_numerical_derivative(probabilities, information):
    """Fisher information E[(d log P_X / d theta)^2] with the derivative taken numerically."""
    thresholds = np.array([[-1.5, -0.2, 0.9, 2.0], [-0.4, 0.6, np.nan, np.nan]])
    a, h = np.array([1.1, 1.8]), 1e-5
    p = probabilities(THETA[:, None], a, thresholds)
    dp = (
        probabilities(THETA[:, None] + h, a, thresholds) - probabilities(THETA[:, None] - h, a, thresholds)
    ) / (2 * h)
    numeric = np.where(p > 1e-300, dp**2 / np.where(p > 1e-300, p, 1.0), 0.0).sum(axis=-1)
    np.testing.assert_allclose(information(THETA[:, None], a, thresholds), numeric, rtol=1e-5, atol=1e-9)


def test_gpcm_information_is_scaled_score_variance():
    """Muraki (1993): I = (D a)^2 Var(X); checked by direct sums on one item."""
    steps, a = np.array([0.8, -0.3, 1.2]), 1.3  # a reversal, legal in the GPCM
    theta = 0.4
    numerators = np.exp(np.concatenate([[0.0], np.cumsum(a * (theta - steps))]))
    p = numerators / numerators.sum()
    k = np.arange(4)
    variance = (k**2 * p).sum() - (k * p).sum() ** 2
    assert poly.gpcm_information(theta, a, steps[None, :])[0] == pytest.approx(a**2 * variance, rel=1e-12)
    np.testing.assert_allclose(poly.gpcm_probabilities(theta, a, steps[None, :])[0], p, rtol=1e-12)


def test_mixed_pool_kernels_pick_each_items_model():
    pool = _mixed_pool()
    args = (pool.a, pool.b, pool.c, pool.D, pool.model_codes, pool.threshold_table)
    p = poly.category_probabilities(THETA[:, None], *args)
    assert p.shape == (THETA.size, 60, 5)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
    dich = pool.model_codes == poly.DICHOTOMOUS
    np.testing.assert_array_equal(
        p[:, dich, 1], irt.probability(THETA, pool.a[dich], pool.b[dich], pool.c[dich])
    )
    grm = ~dich
    np.testing.assert_array_equal(
        p[:, grm], poly.grm_probabilities(THETA[:, None], pool.a[grm], pool.thresholds[grm], pool.D[grm])
    )
    info = poly.category_information(THETA[:, None], *args)
    np.testing.assert_array_equal(
        info[:, dich], irt.information(THETA, pool.a[dich], pool.b[dich], pool.c[dich], pool.D[dich])
    )
    np.testing.assert_allclose(
        poly.expected_score(THETA[:, None], *args)[:, dich], p[:, dich, 1], rtol=0, atol=0
    )


def test_mixed_pool_round_trips_through_csv_and_keeps_dichotomous_checksums(tmp_path):
    pool = _mixed_pool()
    assert pool.model == "mixed" and pool.is_polytomous
    assert sorted(np.unique(pool.n_categories).tolist()) == [2, 5]
    back = load_pool(save_pool(pool, tmp_path / "mixed.csv"))  # written to 6 decimals
    np.testing.assert_allclose(back.thresholds, pool.thresholds, atol=1e-6)
    np.testing.assert_array_equal(back.item_model, pool.item_model)
    assert load_pool(save_pool(back, tmp_path / "again.csv")).sha256() == back.sha256()
    assert load_pool(save_pool(back, tmp_path / "mixed.parquet")).sha256() == back.sha256()
    dich = generate_pool(60, "3PL", rng=3)
    assert not dich.is_polytomous and dich.thresholds is None
    # a subset of only dichotomous items is a dichotomous pool with the old checksum
    only = pool.subset(np.flatnonzero(pool.model_codes == 0))
    assert only.item_model is None
    assert only.sha256() == ItemPool.from_frame(only.to_frame()).sha256()
    assert pool.subset(np.flatnonzero(pool.model_codes != 0)).model == "GRM"


def _frame(**overrides):
    rows = {
        "item_id": ["d1", "g1", "p1"],
        "a": [1.0, 1.2, 0.9],
        "b": [0.0, None, None],
        "c": [0.2, None, 0.0],
        "model": ["", "GRM", "gpcm"],
        "b1": [None, -1.0, 0.5],
        "b2": [None, 0.0, -0.5],
        "b3": [None, 1.0, None],
    }
    rows.update(overrides)
    return pd.DataFrame(rows)


def test_pool_file_with_categories():
    pool = ItemPool.from_frame(_frame())
    assert pool.n_categories.tolist() == [2, 4, 3]
    assert pool.b.tolist() == [0.0, 0.0, 0.0]
    assert pool.c.tolist() == [0.2, 0.0, 0.0]
    assert pool.to_frame()["model"].tolist() == ["", "GRM", "GPCM"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"b2": [None, 2.0, -0.5]}, "GRM thresholds must increase.*g1"),
        ({"a": [1.0, 0.0, 0.9]}, "a must be in.*g1"),
        (
            {"b1": [None, None, 0.5], "b2": [None, None, -0.5], "b3": [None, None, None]},
            "at least 2 categories.*g1",
        ),
        ({"model": ["", "GRM", "PCM2"]}, "column 'model'.*p1"),
        ({"b1": [0.3, -1.0, 0.5]}, "only for GRM/GPCM.*d1"),
        ({"b2": [None, None, -0.5]}, "without gaps.*g1"),
        ({"b3": [None, "inf", None]}, "finite.*g1"),
        ({"c": [0.2, 0.1, 0.0]}, "'c' must be 0 or empty.*g1"),
    ],
)
def test_bad_category_parameters_name_the_item_and_field(overrides, message):
    with pytest.raises(PoolError, match=message):
        ItemPool.from_frame(_frame(**overrides))


def test_thresholds_without_a_model_column_are_refused():
    frame = _frame().drop(columns=["model"])
    with pytest.raises(PoolError, match="need a 'model' column"):
        ItemPool.from_frame(frame)


def test_log_probability_derivatives_against_numerical_derivatives():
    """First and second theta-derivatives of log P(X = k) for 3PL, GRM and GPCM answers."""
    pool = generate_pool(30, "3PL", rng=6, polytomous_share=0.6, polytomous_model="GPCM", n_categories=4)
    grm = generate_pool(30, "3PL", rng=7, polytomous_share=0.6, polytomous_model="GRM", n_categories=5)
    for p in (pool, grm):
        rng = np.random.default_rng(1)
        n = p.n_items
        theta = rng.uniform(-3, 3, n)
        k = rng.integers(0, p.n_categories)
        args = (p.a, p.b, p.c, p.D, p.model_codes, p.threshold_table)

        def log_p(t, args=args, k=k):
            return poly.category_log_probabilities(t, *args)[np.arange(n), k]

        h = 1e-4
        first, second = poly.log_probability_derivatives(theta, *args, k)
        np.testing.assert_allclose(
            first, (log_p(theta + h) - log_p(theta - h)) / (2 * h), rtol=1e-6, atol=1e-7
        )
        numeric2 = (log_p(theta + h) - 2 * log_p(theta) + log_p(theta - h)) / h**2
        np.testing.assert_allclose(second, numeric2, rtol=1e-4, atol=1e-4)
