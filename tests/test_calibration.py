"""qbank.calibration: recovery, exactness against independent slow checks and girth, input errors."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp
from scipy.stats import beta as beta_dist
from scipy.stats import norm

from qbank.calibration import (
    CalibrationError,
    CalibrationReport,
    CalibrationWarning,
    Calibrator,
    Hierarchical,
    ResponseMatrix,
    calibrate,
    parse_prior,
    read_responses,
)
from qbank.calibration.girth_check import girth_threepl, girth_twopl
from qbank.irt import probability
from qbank.pool import ItemPool, generate_pool, load_pool
from qbank.simulation import simulate


def _responses(pool, n_persons, seed, theta_mean=0.0, missing=0.0):
    """Complete (or MCAR-missing) responses of N(theta_mean, 1) persons; returns (y, theta)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(theta_mean, 1.0, n_persons)
    y = (rng.random((n_persons, pool.n_items)) < probability(theta, pool.a, pool.b, pool.c, pool.D)).astype(
        float
    )
    if missing:
        y[rng.random(y.shape) < missing] = np.nan
    return y, theta


def _rmse(estimate, truth):
    return float(np.sqrt(np.mean((np.asarray(estimate) - np.asarray(truth)) ** 2)))


def _marginal_log_posterior(y, a, b, c, prior_loga=(0.0, 0.5), prior_c=None):
    """Independent slow check: log of prod_n sum_q w_q prod_j P^y Q^(1-y) plus log priors,
    written from qbank.irt.probability and scipy densities, not from the EM kernels."""
    grid = np.linspace(-5.0, 5.0, 41)
    log_w = norm.logpdf(grid) - logsumexp(norm.logpdf(grid))
    p = probability(grid, a, b, c)
    answered = ~np.isnan(y)
    correct = np.where(answered, y, 0.0)
    loglik = correct @ np.log(p).T + (answered - correct) @ np.log1p(-p).T
    total = logsumexp(loglik + log_w, axis=1).sum()
    if prior_loga is not None:
        total += norm.logpdf(np.log(a), *prior_loga).sum()
    if prior_c is not None:
        total += beta_dist.logpdf(c, *prior_c).sum()
    return total


# ---------------------------------------------------------------------------------------- recovery
def test_3pl_recovery_on_complete_data():
    pool = generate_pool(40, "3PL", rng=11)
    y, _ = _responses(pool, 2000, seed=12)
    fitted = Calibrator("3PL").fit(y)
    est = fitted.item_params_
    assert fitted.converged_
    assert _rmse(est["a"], pool.a) < 0.25
    assert _rmse(est["b"], pool.b) < 0.30
    assert _rmse(est["c"], pool.c) < 0.10
    assert (est["D"] == 1.0).all()


def test_missing_responses_drop_out_of_the_likelihood_not_imputed():
    pool = generate_pool(20, "2PL", rng=3)
    y, _ = _responses(pool, 3000, seed=4, missing=0.5)
    report = calibrate(y, "2PL")
    assert _rmse(report.items["b"], pool.b) < 0.2
    # Per-item n counts answered cells only.
    np.testing.assert_array_equal(report.items["n"].to_numpy(), (~np.isnan(y)).sum(axis=0))
    # The same answers in long format (absent rows) and in sparse storage give the same fit.
    long = ResponseMatrix.from_wide(y).to_long()
    from_long = calibrate(long, "2PL").items.loc[report.items.index]
    sparse_fit = calibrate(ResponseMatrix.from_wide(y).with_storage("sparse"), "2PL").items
    np.testing.assert_allclose(from_long[["a", "b"]], report.items[["a", "b"]], atol=1e-10)
    np.testing.assert_allclose(
        sparse_fit[["a", "b", "se_a", "se_b"]], report.items[["a", "b", "se_a", "se_b"]], atol=1e-10
    )


def test_cat_data_recovery_on_items_with_100_responses():
    rng = np.random.default_rng(21)
    bank = ItemPool.from_arrays(
        np.exp(rng.normal(0.1, 0.3, 300)).clip(0.4, 2.5), rng.normal(0, 1, 300), rng.beta(5, 17, 300)
    )
    result = simulate(bank, n_examinees=3000, rng=22)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # a few never-missed items are dropped
        report = calibrate(result.responses_long(), "3PL", drop_invariant=True)
    items = report.items
    used = items["n"] >= 100
    truth = bank.to_frame().set_index("item_id").loc[items.index]
    assert used.sum() > 60
    assert _rmse(items.loc[used, "b"], truth.loc[used, "b"]) < 0.30


def test_1pl_recovers_common_discrimination():
    pool = ItemPool.from_arrays(np.full(15, 1.4), np.linspace(-2, 2, 15), np.zeros(15))
    y, _ = _responses(pool, 2000, seed=5)
    est = calibrate(y, "1PL").items
    assert est["a"].nunique() == 1
    assert abs(est["a"].iloc[0] - 1.4) < 0.1
    assert _rmse(est["b"], pool.b) < 0.12


# ---------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("model", ["1PL", "2PL", "3PL"])
def test_em_reaches_the_maximum_of_the_marginal_posterior(model):
    """The EM fixed point equals a direct L-BFGS maximisation of an independently coded
    marginal log posterior (Bock & Aitkin 1981 eq. 5 with Mislevy 1986 priors)."""
    pool = generate_pool(6, model, rng=1)
    y, _ = _responses(pool, 800, seed=2, missing=0.2)
    fitted = Calibrator(model, tol=1e-8, max_iter=5000).fit(y)
    it = fitted.report_.items
    if model == "3PL":

        def objective(v):
            return -_marginal_log_posterior(y, np.exp(v[:6]), v[6:12], v[12:], prior_c=(5, 17))

        start = np.concatenate([np.log(it["a"]), it["b"], it["c"]])
        bounds = [(-3, 2)] * 6 + [(-8, 8)] * 6 + [(1e-6, 0.6)] * 6
    elif model == "2PL":

        def objective(v):
            return -_marginal_log_posterior(y, np.exp(v[:6]), v[6:], np.zeros(6))

        start = np.concatenate([np.log(it["a"]), it["b"]])
        bounds = None
    else:

        def objective(v):  # one common a, its prior counted once
            return -(
                _marginal_log_posterior(y, np.full(6, np.exp(v[0])), v[1:], np.zeros(6), prior_loga=None)
                + norm.logpdf(v[0], 0.0, 0.5)
            )

        start = np.concatenate([[np.log(it["a"].iloc[0])], it["b"]])
        bounds = None
    direct = minimize(objective, start + 0.05, method="L-BFGS-B", bounds=bounds, options={"maxiter": 3000})
    assert -objective(start) >= -direct.fun - 1e-4
    np.testing.assert_allclose(direct.x, start, atol=2e-3)


@pytest.mark.parametrize("model", ["1PL", "2PL"])
def test_standard_errors_match_the_numerical_hessian(model):
    """Cross-product (XPD) SEs against the inverse finite-difference Hessian of the
    independently coded marginal log posterior."""
    pool = generate_pool(5, model, rng=7)
    y, _ = _responses(pool, 1500, seed=8)
    it = calibrate(y, model, tol=1e-8, max_iter=5000).items
    if model == "2PL":

        def f(v):
            return _marginal_log_posterior(y, np.exp(v[:5]), v[5:], np.zeros(5))

        at = np.concatenate([np.log(it["a"]), it["b"]])
        ours = np.concatenate([it["se_a"] / it["a"], it["se_b"]])
    else:

        def f(v):
            return _marginal_log_posterior(
                y, np.full(5, np.exp(v[0])), v[1:], np.zeros(5), prior_loga=None
            ) + norm.logpdf(v[0], 0.0, 0.5)

        at = np.concatenate([[np.log(it["a"].iloc[0])], it["b"]])
        ours = np.concatenate([[it["se_a"].iloc[0] / it["a"].iloc[0]], it["se_b"]])
    h, n = 1e-4, at.size
    steps = np.eye(n) * h
    hessian = np.array(
        [
            [
                (
                    f(at + steps[i] + steps[j])
                    - f(at + steps[i] - steps[j])
                    - f(at - steps[i] + steps[j])
                    + f(at - steps[i] - steps[j])
                )
                / (4 * h * h)
                for j in range(n)
            ]
            for i in range(n)
        ]
    )
    expected = np.sqrt(np.diag(np.linalg.inv(-hessian)))
    # XPD and observed information agree asymptotically; at this size within a few per cent.
    np.testing.assert_allclose(ours, expected, rtol=0.08)


def test_grid_log_likelihood_against_numerical_integration():
    """Marginal likelihood of two tiny patterns: the quadrature kernel against scipy.integrate.quad."""
    from scipy.integrate import quad

    from qbank.calibration import _em

    a, b, c = np.array([1.2, 0.7]), np.array([-0.3, 0.8]), np.array([0.2, 0.1])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    theta = np.linspace(-6, 6, 121)
    x = np.column_stack([np.log(a), b, c])
    loglik = _em.grid_log_likelihood(np.ones_like(y), y, _em.item_probability(theta, x))
    _, marginal = _em.posterior(loglik, np.log(_em.normal_weights(theta)))

    def pattern(t, row):
        p = c + (1 - c) / (1 + np.exp(-a * (t - b)))
        return np.prod(np.where(row == 1, p, 1 - p)) * norm.pdf(t)

    exact = sum(np.log(quad(pattern, -10, 10, args=(row,))[0]) for row in y)
    assert marginal == pytest.approx(exact, abs=1e-6)


def test_same_input_same_result_bit_for_bit():
    pool = generate_pool(10, "3PL", rng=9)
    y, _ = _responses(pool, 500, seed=10)
    first, second = Calibrator("3PL").fit(y), Calibrator("3PL").fit(y)
    pd.testing.assert_frame_equal(first.report_.items, second.report_.items, check_exact=True)


# ---------------------------------------------------------------------------------------- girth
def test_2pl_agrees_with_girth():
    """girth's twopl_mml has no priors; with the log-a prior off both are plain MML."""
    pool = generate_pool(10, "2PL", rng=13)
    y, _ = _responses(pool, 1000, seed=14)
    ours = calibrate(y, "2PL", prior_loga=None).items
    theirs = girth_twopl(y)
    np.testing.assert_allclose(ours["a"], theirs["a"], atol=0.02)
    np.testing.assert_allclose(ours["b"], theirs["b"], atol=0.02)


def test_3pl_girth_runs_through_the_shim_and_roughly_agrees():
    import importlib

    girth_module = importlib.import_module("girth.unidimensional.dichotomous.threepl_mml")
    original = girth_module._mml_abstract
    pool = generate_pool(8, "3PL", rng=15)
    y, _ = _responses(pool, 1000, seed=16)
    theirs = girth_threepl(y)
    assert girth_module._mml_abstract is original  # the shim is undone after the call
    ours = calibrate(y, "3PL").items
    assert np.all(np.isfinite(theirs.to_numpy()))
    assert np.corrcoef(ours["b"], theirs["b"])[0, 1] > 0.9


# ---------------------------------------------------------------------------------------- fixed items
@pytest.fixture(scope="module")
def pretest_design():
    """A 300-item bank given adaptively to N(0.6, 1) examinees plus 12 pretest items, 6 random
    ones per examinee."""
    rng = np.random.default_rng(30)
    bank = generate_pool(300, "3PL", rng=rng)
    new = generate_pool(12, "3PL", rng=rng)
    new = ItemPool.from_arrays(new.a, new.b, new.c, item_id=[f"NEW{i:02d}" for i in range(12)])
    result = simulate(bank, n_examinees=2500, theta_params=(0.6, 1.0), rng=31)
    n = result.n_examinees
    taken = rng.random((n, new.n_items)).argsort(axis=1)[:, :6]
    persons = np.repeat(np.arange(n), 6)
    items = taken.ravel()
    p = probability(result.theta, new.a, new.b, new.c, new.D)[persons, items]
    pretest = pd.DataFrame(
        {
            "person_id": persons,
            "item_id": new.item_id[items],
            "response": (rng.random(persons.size) < p).astype(int),
        }
    )
    return bank, new, pd.concat([result.responses_long(), pretest], ignore_index=True)


@pytest.mark.parametrize(
    ("latent", "tol"), [("normal", 1e-4), ("histogram", 1e-3)]
)  # the histogram is slow to settle
def test_fixed_parameter_calibration_puts_pretest_items_on_the_bank_scale(pretest_design, latent, tol):
    bank, new, responses = pretest_design
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # bank items never administered
        report = calibrate(responses, "3PL", fixed_pool=bank, latent=latent, tol=tol)
    summary = report.summary
    assert summary["latent_estimated"] == latent and abs(summary["latent_mean"] - 0.6) < 0.1
    assert abs(summary["latent_sd"] - 1.0) < 0.1
    estimated = report.items.loc[new.item_id]
    assert not estimated["fixed"].any() and estimated["se_b"].gt(0).all()
    assert abs(float(np.mean(estimated["b"] - new.b))) < 0.15
    assert _rmse(estimated["b"], new.b) < 0.35
    # Bank items come out unchanged and first, pretest items after them.
    out = report.pool
    assert list(out.item_id[: bank.n_items]) == list(bank.item_id)
    np.testing.assert_allclose(out.b[: bank.n_items], bank.b)
    assert report.items.loc[bank.item_id, "se_b"].isna().all()


def test_without_the_bank_pretest_items_shift_by_the_population_mean(pretest_design):
    """The contrast that makes fixed-parameter calibration necessary: free calibration sets the
    N(0.6, 1) population to N(0, 1), so difficulties come out about 0.6 too low."""
    _, new, responses = pretest_design
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        free = calibrate(responses, "3PL", drop_invariant=True).items.loc[new.item_id]
    assert float(np.mean(free["b"] - new.b)) < -0.35


def test_fixed_pool_with_d_1_7_is_used_in_the_logistic_metric(tmp_path):
    bank = generate_pool(12, "2PL", rng=40)
    y, _ = _responses(bank, 1500, seed=41)
    new_col = (np.random.default_rng(42).random(1500) < 0.6).astype(float)
    frame = pd.DataFrame(np.column_stack([y, new_col]), columns=[*bank.item_id, "NEW"])
    d17 = ItemPool.from_arrays(bank.a / 1.7, bank.b, bank.c, D=1.7, item_id=bank.item_id)
    a = calibrate(frame, "2PL", fixed_pool=bank)
    b = calibrate(frame, "2PL", fixed_pool=d17)
    assert b.pool.D.tolist() == [1.0] * 13
    np.testing.assert_allclose(b.pool.a, a.pool.a, rtol=1e-12)
    np.testing.assert_allclose(
        b.items.loc["NEW", ["a", "b"]].astype(float), a.items.loc["NEW", ["a", "b"]].astype(float), rtol=1e-9
    )


def test_1pl_fixed_calibration_keeps_the_bank_discrimination():
    both = ItemPool.from_arrays(np.full(14, 1.2), np.linspace(-1.5, 1.5, 14), np.zeros(14))
    y, _ = _responses(both, 1500, seed=43)
    bank = both.subset(np.arange(12))
    est = calibrate(pd.DataFrame(y, columns=both.item_id), "1PL", fixed_pool=bank).items
    np.testing.assert_allclose(est["a"], 1.2)
    assert est.loc[both.item_id[12:], "se_a"].isna().all()
    np.testing.assert_allclose(est.loc[both.item_id[12:], "b"], both.b[12:], atol=0.2)
    mixed = ItemPool.from_arrays(np.linspace(0.8, 1.6, 12), bank.b, item_id=bank.item_id)
    with pytest.raises(CalibrationError, match="one common D\\*a"):
        calibrate(pd.DataFrame(y, columns=both.item_id), "1PL", fixed_pool=mixed)


# ---------------------------------------------------------------------------------------- input errors
def test_non_score_responses_name_person_item_and_value(tmp_path):
    wide = pd.DataFrame({"person_id": ["p1", "p2", "p3"], "Q1": [1, 0, 1.5], "Q2": [0, 1, -1]})
    with pytest.raises(CalibrationError, match=r"integer scores.*\('p3', 'Q1', 1.5\), \('p3', 'Q2', -1"):
        read_responses(wide)
    # A score of 2 is a category; a dichotomous calibration names the item.
    wide = pd.DataFrame({"person_id": ["p1", "p2", "p3"], "Q1": [1, 0, 2], "Q2": [0, 1, 1]})
    with pytest.raises(CalibrationError, match=r"need a polytomous model.*Q1 \(up to 2\)"):
        calibrate(wide, "2PL")
    path = tmp_path / "long.csv"
    path.write_text("person_id,item_id,response\np1,007,1\np1,008,yes\np2,007,\n")
    with pytest.raises(CalibrationError, match=r"\('p1', '008', 'yes'\)"):
        read_responses(path)


def test_long_input_errors(tmp_path):
    with pytest.raises(CalibrationError, match="more than once"):
        read_responses(pd.DataFrame({"person_id": [1, 1], "item_id": ["A", "A"], "response": [1, 0]}))
    path = tmp_path / "x.csv"
    path.write_text("person,item_id,response\np1,A,1\n")
    with pytest.raises(CalibrationError, match=r"missing \['person_id'\]"):
        read_responses(path, format="long")
    with pytest.raises(CalibrationError, match="no such file"):
        read_responses(tmp_path / "absent.parquet")


def test_ids_keep_leading_zeros_and_empty_responses_are_missing(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("person_id,item_id,response\np1,007,1\np1,008,0\np2,007,\np2,008,NA\np3,007,0\n")
    data = read_responses(path)
    assert sorted(data.item_id) == ["007", "008"] and data.n_responses == 3


def test_items_without_variance_raise_or_are_dropped_with_a_warning():
    pool = generate_pool(6, "2PL", rng=50)
    y, _ = _responses(pool, 400, seed=51)
    y[:, 2] = 1.0
    with pytest.raises(CalibrationError, match=r"I0003 \(all 1 in 400 responses\)"):
        calibrate(y, "2PL")
    with pytest.warns(CalibrationWarning, match="I0003"):
        report = calibrate(y, "2PL", drop_invariant=True)
    assert "I0003" not in report.items.index and report.summary["dropped_items"] == ["I0003"]


def test_fixed_pool_id_problems():
    bank = generate_pool(5, "2PL", rng=60)
    y, _ = _responses(bank, 300, seed=61)
    other = ItemPool.from_arrays(bank.a, bank.b, item_id=[f"X{i}" for i in range(5)])
    with pytest.raises(CalibrationError, match="none of its 5 item ids occur"):
        calibrate(y, "2PL", fixed_pool=other)
    with pytest.raises(CalibrationError, match="nothing to calibrate"):
        calibrate(y, "2PL", fixed_pool=bank)
    bigger = ItemPool.from_arrays(
        np.r_[bank.a[:4], 1.0], np.r_[bank.b[:4], 0.0], item_id=[*bank.item_id[:4], "UNSEEN"]
    )
    with pytest.warns(CalibrationWarning, match=r"carried over unchanged: \['UNSEEN'\]"):
        report = calibrate(y, "2PL", fixed_pool=bigger)
    assert "UNSEEN" in report.pool.item_id and report.items.loc["UNSEEN", "n"] == 0


def test_settings_are_checked():
    y = np.array([[1, 0], [0, 1], [1, 1]], dtype=float)
    with pytest.raises(CalibrationError, match="model must be one of"):
        Calibrator("4PL").fit(y)
    with pytest.raises(CalibrationError, match="normal sd must be > 0"):
        Calibrator("2PL", prior_loga=(0, 0)).fit(y)
    with pytest.raises(CalibrationError, match="latent must be 'normal' or 'histogram'"):
        Calibrator("2PL", latent="kde").fit(y)
    with pytest.raises(CalibrationError, match="not fitted"):
        Calibrator().to_pool()
    assert parse_prior("beta:5,17", "beta") == (5.0, 17.0)
    assert parse_prior("none", "normal") is None
    with pytest.raises(CalibrationError, match="must look like 'beta:x,y'"):
        parse_prior("normal:0,1", "beta")


def test_hierarchical_mean_update_against_hand_computation():
    # Mislevy (1986) normal-normal mode: (sum v / sd^2 + m0 / t^2) / (n / sd^2 + 1 / t^2).
    # v = (0.2, 0.4, 0.9), sd 0.5, m0 0, t 1: (1.5 / 0.25) / (3 / 0.25 + 1) = 6 / 13.
    assert Hierarchical(0.0, 0.5, 1.0).update(np.array([0.2, 0.4, 0.9])) == pytest.approx(
        6.0 / 13.0, rel=1e-12
    )
    # m0 1, t 0.5, one value 0: (0 + 1 / 0.25) / (1 / 0.25 + 1 / 0.25) = 0.5.
    assert Hierarchical(1.0, 0.5, 0.5).update(np.array([0.0])) == pytest.approx(0.5, rel=1e-12)
    assert parse_prior("hierarchical", "normal") == Hierarchical(0.0, 0.5, 1.0)
    assert parse_prior("hierarchical:0.2,0.4", "normal") == Hierarchical(0.2, 0.4, 1.0)
    with pytest.raises(CalibrationError, match="two numbers after 'hierarchical:'"):
        parse_prior("hierarchical:x", "normal")
    with pytest.raises(CalibrationError, match="normal sd must be > 0"):
        Calibrator("2PL", prior_loga="hierarchical:0,-1").fit(np.array([[1, 0], [0, 1], [1, 1]], dtype=float))


def test_hierarchical_log_a_prior_recovers_a_bank_far_from_a_1():
    # A bank of steep items (mean log a 0.7, a ~ 2): the fixed N(0, 0.5) prior pulls every a
    # towards 1; the hierarchical prior moves its mean to the bank's and must do at least as well.
    rng = np.random.default_rng(31)
    pool = ItemPool.from_arrays(np.exp(rng.normal(0.7, 0.2, 15)), rng.normal(0.0, 1.0, 15), np.zeros(15))
    y, _ = _responses(pool, 600, seed=32)
    fixed = Calibrator("2PL").fit(y)
    hier = Calibrator("2PL", prior_loga="hierarchical").fit(y)
    assert hier.converged_
    est = hier.item_params_
    # At convergence the prior mean is the hyper M-step of the final estimates (a fixed point).
    mean, sd = hier.report_.summary["priors"]["loga"]
    assert sd == 0.5 and hier.report_.summary["priors"]["hierarchical"] == ["loga"]
    assert mean == pytest.approx(Hierarchical().update(np.log(est["a"].to_numpy())), abs=1e-3)
    assert 0.4 < mean < 1.0
    assert _rmse(est["a"], pool.a) <= _rmse(fixed.item_params_["a"], pool.a) + 0.02
    assert _rmse(est["a"], pool.a) < 0.35
    assert _rmse(est["b"], pool.b) < 0.25


def test_non_convergence_is_reported():
    pool = generate_pool(8, "3PL", rng=70)
    y, _ = _responses(pool, 300, seed=71)
    with pytest.warns(CalibrationWarning, match="without converging"):
        fitted = Calibrator("3PL", max_iter=2).fit(y)
    assert not fitted.converged_ and fitted.n_iter_ == 2


def test_an_item_the_data_cannot_place_is_flagged_and_named():
    """An item given only to the 150 lowest scorers, answered at a guessing rate: under the c
    prior the MAP runs to the b bound, which the report flags and a warning names."""
    pool = generate_pool(10, "3PL", rng=90)
    y, _ = _responses(pool, 1000, seed=91)
    low_only = np.full(1000, np.nan)
    lowest = np.argsort(y.sum(axis=1))[:150]
    low_only[lowest] = (np.random.default_rng(92).random(150) < 0.12).astype(float)
    with pytest.warns(CalibrationWarning, match=r"ended at a bound .* \['LOW'\]"):
        items = calibrate(
            pd.DataFrame(np.column_stack([y, low_only]), columns=[*pool.item_id, "LOW"]), "3PL"
        ).items
    assert items.loc["LOW", "at_bound"] and items.loc["LOW", "se_b"] > 10
    assert not items.loc[pool.item_id, "at_bound"].any()


def _with_far_item(n_persons=1000, seed=0):
    """10 items answered by everyone plus FAR (a 1.2, b -0.7, c 0.01), given only to the 150
    lowest true abilities, far below it: its difficulty is barely identified. Seed 0 leaves the
    MAP inside the bounds (b about 1.2, se_b about 0.85), the case an at-bound check misses."""
    pool = generate_pool(10, "3PL", rng=90)
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_persons)
    y = (rng.random((n_persons, 10)) < probability(theta, pool.a, pool.b, pool.c, pool.D)).astype(float)
    far = np.full(n_persons, np.nan)
    lowest = np.argsort(theta)[:150]
    p_far = probability(theta[lowest], np.array([1.2]), np.array([-0.7]), np.array([0.01]), 1.0)[:, 0]
    far[lowest] = (rng.random(150) < p_far).astype(float)
    return pool, pd.DataFrame(np.column_stack([y, far]), columns=[*pool.item_id, "FAR"])


def test_an_item_far_from_its_takers_is_flagged_poorly_determined():
    pool, responses = _with_far_item()
    with pytest.warns(CalibrationWarning, match=r"se_b > se_b_limit=0.5.*FAR \(b [0-9.]+, se_b [0-9.]+\)"):
        report = calibrate(responses, "3PL")
    items = report.items
    far = items.loc["FAR"]
    # Off by far more than a logit, yet inside the bounds: only its standard error gives it away.
    assert abs(far["b"] - (-0.7)) > 1.0 and not far["at_bound"]
    assert far["se_b"] > 0.5 and far["poorly_determined"]
    assert not items.loc[pool.item_id, "poorly_determined"].any()
    assert report.summary["n_items_poorly_determined"] == 1 and report.summary["se_b_limit"] == 0.5

    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)  # no flag, so no warning
        relaxed = calibrate(responses, "3PL", se_b_limit=None).items
    assert not relaxed["poorly_determined"].any()
    np.testing.assert_allclose(relaxed[["a", "b", "c"]], items[["a", "b", "c"]])


@pytest.mark.parametrize("limit", [0, -1.0, float("nan"), float("inf"), "1"])
def test_se_b_limit_must_be_a_positive_number(limit):
    with pytest.raises(CalibrationError, match="se_b_limit must be a finite number > 0 or None"):
        Calibrator("2PL", se_b_limit=limit).fit(np.array([[0, 1], [1, 0], [1, 1], [0, 0]], dtype=float))


# ---------------------------------------------------------------------------------------- output
def test_output_pool_and_report_round_trip(tmp_path):
    pool = generate_pool(10, "3PL", rng=80)
    y, _ = _responses(pool, 800, seed=81)
    fitted = Calibrator("3PL").fit(pd.DataFrame(y, columns=pool.item_id))
    paths = fitted.report_.save(tmp_path / "calibrated.csv")
    loaded = load_pool(paths["pool"])
    assert list(loaded.item_id) == list(pool.item_id) and np.all(loaded.D == 1.0)
    np.testing.assert_allclose(loaded.b, fitted.item_params_["b"], atol=1e-6)
    report = json.loads(paths["report"].read_text())
    assert report["summary"]["iterations"] == fitted.n_iter_ > 1
    assert report["summary"]["log_likelihood"] == pytest.approx(fitted.log_likelihood_)
    trace = np.array(report["log_likelihood_trace"])
    assert np.all(np.diff(trace) > -1e-6)  # EM never decreases the (penalised) likelihood much
    first = report["items"][0]
    assert first["n"] == 800 and first["se_b"] > 0 and first["fixed"] is False
    assert fitted.to_pool().n_items == 10
    items = CalibrationReport.read_items(paths["report"])
    pd.testing.assert_frame_equal(
        items[["a", "b", "n", "poorly_determined"]],
        fitted.report_.items[["a", "b", "n", "poorly_determined"]],
        check_dtype=False,
    )


def test_reading_a_report_names_what_is_wrong(tmp_path):
    with pytest.raises(CalibrationError, match="no such calibration report"):
        CalibrationReport.read_items(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CalibrationError, match="not a readable calibration report"):
        CalibrationReport.read_items(broken)
    broken.write_text(json.dumps({"items": []}))
    with pytest.raises(CalibrationError, match="non-empty 'items' list"):
        CalibrationReport.read_items(broken)
    broken.write_text(json.dumps({"items": [{"item_id": "I1", "a": 1.0, "b": 0.0, "c": 0.2, "n": 10}]}))
    with pytest.raises(CalibrationError, match=r"lack column\(s\) \['poorly_determined'\]"):
        CalibrationReport.read_items(broken)
