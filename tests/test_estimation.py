from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from qbank import EAP, MAP, MLE, generate_pool, irt, load_pool, make_estimator, simulate
from qbank.estimation import dodd_step, eap_from_posterior, touches_edge
from qbank.stopping import FixedLength, StandardError

DEMO_POOL = Path(__file__).resolve().parents[1] / "data" / "demo_pool.csv"


@pytest.fixture(scope="module")
def pattern():
    pool = generate_pool(12, rng=4)
    rng = np.random.default_rng(7)
    resp = (rng.random((3, 12)) < irt.probability(np.array([-1.0, 0.3, 1.4]), pool.a, pool.b, pool.c)).astype(
        float
    )
    resp[1, 8:] = np.nan  # the second examinee answered 8 items only
    shape = resp.shape
    params = [np.broadcast_to(x, shape) for x in (pool.a, pool.b, pool.c, pool.D)]
    return params, resp


def _loglik(theta, params, row):
    a, b, c, D = (p[0] for p in params)
    keep = ~np.isnan(row)
    return irt.log_likelihood([theta], row[None, keep], a[keep], b[keep], c[keep], D[keep])[0]


def test_eap_matches_brute_force_integration(pattern):
    params, resp = pattern
    # A wide, fine grid makes the quadrature close to the integral over the real line.
    theta, se = EAP(n_points=801, grid_min=-7, grid_max=7).estimate(*params, resp)
    for e in range(resp.shape[0]):

        def weight(t, power):
            return t**power * np.exp(_loglik(t, params, resp[e])) * stats.norm.pdf(t)

        z = integrate.quad(weight, -10, 10, args=(0,))[0]
        mean = integrate.quad(weight, -10, 10, args=(1,))[0] / z
        var = integrate.quad(weight, -10, 10, args=(2,))[0] / z - mean**2
        assert theta[e] == pytest.approx(mean, abs=1e-6)
        assert se[e] == pytest.approx(np.sqrt(var), abs=1e-6)


def _whole_line_eap(a, b, c, D, row):
    """EAP and posterior SD by adaptive quadrature over the whole real line (independent check)."""

    def weight(t):
        p = c + (1 - c) * special.expit(D * a * (t - b))
        with np.errstate(divide="ignore"):  # far out, 1 - p rounds to 0: weight 0
            return np.exp(np.sum(np.where(row == 1, np.log(p), np.log1p(-p))) + stats.norm.logpdf(t))

    opts = dict(epsabs=0, epsrel=1e-11, limit=200)
    z = integrate.quad(weight, -np.inf, np.inf, **opts)[0]
    mean = integrate.quad(lambda t: t * weight(t), -np.inf, np.inf, **opts)[0] / z
    var = integrate.quad(lambda t: (t - mean) ** 2 * weight(t), -np.inf, np.inf, **opts)[0] / z
    return mean, np.sqrt(var)


@pytest.fixture(scope="module")
def extreme_patterns():
    """The demo pool's 30 hardest and 30 easiest items with all-correct, all-wrong and 12 random
    patterns each (the issue's checks: hardest all correct 3.779 / 0.506, easiest all wrong
    -3.939 / 0.474)."""
    pool = load_pool(DEMO_POOL)
    order = np.argsort(pool.b, kind="stable")
    rng = np.random.default_rng(13)
    cases = []
    for items in (order[-30:], order[:30]):
        patterns = [np.ones(30), np.zeros(30)] + [
            (rng.random(30) < share).astype(float) for share in np.linspace(0.05, 0.95, 12)
        ]
        cases.append(((pool.a[items], pool.b[items], pool.c[items], pool.D[items]), np.array(patterns)))
    return cases


def test_default_eap_agrees_with_whole_line_integration_at_the_extremes(extreme_patterns):
    worst = 0.0
    for params, patterns in extreme_patterns:
        theta, se = EAP().estimate(*(np.broadcast_to(p, patterns.shape) for p in params), patterns)
        for k, row in enumerate(patterns):
            mean, sd = _whole_line_eap(*params, row)
            worst = max(worst, abs(theta[k] - mean), abs(se[k] - sd))
    assert worst < 1e-4
    hard, easy = extreme_patterns
    theta, se = EAP().estimate(*(np.broadcast_to(p, (1, 30)) for p in hard[0]), hard[1][:1])
    assert (theta[0], se[0]) == (pytest.approx(3.779, abs=1e-3), pytest.approx(0.506, abs=1e-3))
    theta, se = EAP().estimate(*(np.broadcast_to(p, (1, 30)) for p in easy[0]), easy[1][1:2])
    assert (theta[0], se[0]) == (pytest.approx(-3.939, abs=1e-3), pytest.approx(0.474, abs=1e-3))


def test_a_narrow_grid_alone_would_truncate_and_the_widening_repairs_it(extreme_patterns):
    params, patterns = extreme_patterns[0]
    shaped = [np.broadcast_to(p, (1, 30)) for p in params]
    narrow = EAP(n_points=61, grid_min=-4, grid_max=4)
    posterior = narrow.posterior(*shaped, patterns[:1])
    assert touches_edge(posterior)[0]
    truncated = eap_from_posterior(posterior, narrow.grid)
    assert truncated[0][0] == pytest.approx(3.541, abs=2e-3)  # the truncated figure
    theta, se = narrow.estimate(*shaped, patterns[:1])
    assert theta[0] == pytest.approx(3.7787, abs=1e-4) and se[0] == pytest.approx(0.5060, abs=1e-4)


def test_map_at_the_extremes_matches_optimisation_over_the_whole_line(extreme_patterns):
    for params, patterns in extreme_patterns:
        theta, _ = MAP().estimate(*(np.broadcast_to(p, (2, 30)) for p in params), patterns[:2])
        for k in range(2):
            row = patterns[k]

            def neg_post(t):
                p = params[2] + (1 - params[2]) * special.expit(params[3] * params[0] * (t - params[1]))
                return -(np.sum(np.where(row == 1, np.log(p), np.log1p(-p))) + stats.norm.logpdf(t))

            best = optimize.minimize_scalar(neg_post, bracket=(-2, 2), options={"xtol": 1e-10}).x
            assert theta[k] == pytest.approx(best, abs=1e-4)
            assert -6 < theta[k] < 6


def test_mle_dodd_heuristic_steps_half_way_to_the_pool_extremes():
    """Dodd (1990), as catsim's ``cat.dodd`` applied from the start: theta_{t+1} = theta_t +
    (b_max - theta_t) / 2 after a correct answer of an all-correct pattern (b_min when all wrong)."""
    a, b, c = np.ones((3, 3)), np.zeros((3, 3)), np.zeros((3, 3))
    resp = np.array([[1.0, 1.0, np.nan], [0.0, 0.0, 0.0], [1.0, 0.0, np.nan]])
    theta, se = MLE(dodd=True, b_range=(-2.0, 3.0)).estimate(a, b, c, 1.0, resp)
    # by hand: 0 -> 1.5 -> 2.25; 0 -> -1 -> -1.5 -> -1.75; the mixed pattern's MLE is b = 0
    np.testing.assert_allclose(theta, [2.25, -1.75, 0.0], atol=1e-6)
    assert np.all(np.isfinite(se))
    assert dodd_step(np.array([0, 4]), np.array([True, True]), (-1.0, 2.0), start=0.5).tolist() == [
        0.5,
        2.0 - 1.5 / 16,
    ]
    with pytest.raises(ValueError, match="needs b_range"):
        MLE(dodd=True).estimate(a, b, c, 1.0, resp)
    with pytest.raises(ValueError, match="bounds must be"):
        MLE(bounds=(1.0, -1.0))


def test_simulated_mle_with_dodd_takes_the_pool_range():
    pool = generate_pool(60, rng=2)
    result = simulate(
        pool, theta=[0.0], stopping=FixedLength(5), estimator=MLE(dodd=True), rng=3, keep_examinees=True
    )
    assert np.isfinite(result.theta_hat).all()


@pytest.mark.parametrize("true_theta", [-3.5, 3.5])
def test_se_stopping_at_the_extremes_uses_the_whole_line_posterior_sd(true_theta):
    """With an SE stopping rule, a student at theta = +-3.5 stops at the first step whose
    whole-line posterior SD is <= the target: the SE is not shrunk by a grid edge."""
    pool = load_pool(DEMO_POOL)
    stopping = StandardError(0.45, min_length=1, max_length=40)
    result = simulate(pool, theta=np.full(6, true_theta), stopping=stopping, rng=5)
    for k in range(result.n_examinees):
        items = result.administered[k, : result.length[k]].astype(np.intp)
        answers = result.responses[k, : result.length[k]].astype(float)
        params = (pool.a[items], pool.b[items], pool.c[items], pool.D[items])
        mean, sd = _whole_line_eap(*params, answers)
        assert result.theta_hat[k] == pytest.approx(mean, abs=1e-4)
        assert result.se[k] == pytest.approx(sd, abs=1e-4)
        if result.length[k] < stopping.max_length:
            assert sd <= stopping.se_target
        if result.length[k] > 1:
            before = _whole_line_eap(*(p[:-1] for p in params), answers[:-1])[1]
            assert before > stopping.se_target


def test_map_and_mle_match_numerical_optimisation(pattern):
    params, resp = pattern
    theta_map, se_map = MAP(bounds=(-4, 4)).estimate(*params, resp)
    theta_mle, _ = MLE(bounds=(-4, 4)).estimate(*params, resp)
    for e in range(resp.shape[0]):
        neg_post = lambda t: -(_loglik(t, params, resp[e]) + stats.norm.logpdf(t))  # noqa: E731
        neg_lik = lambda t: -_loglik(t, params, resp[e])  # noqa: E731
        best_map = optimize.minimize_scalar(
            neg_post, bounds=(-4, 4), method="bounded", options={"xatol": 1e-9}
        ).x
        best_mle = optimize.minimize_scalar(
            neg_lik, bounds=(-4, 4), method="bounded", options={"xatol": 1e-9}
        ).x
        assert theta_map[e] == pytest.approx(best_map, abs=1e-4)
        assert theta_mle[e] == pytest.approx(best_mle, abs=1e-4)
    assert np.all(se_map > 0)


def test_mle_is_bounded_for_perfect_patterns():
    a = b = c = np.zeros((2, 5))
    a = np.ones((2, 5))
    resp = np.array([[1.0] * 5, [0.0] * 5])
    theta, _ = MLE(bounds=(-3.0, 3.0)).estimate(a, b, c, np.ones((2, 5)), resp)
    np.testing.assert_allclose(theta, [3.0, -3.0])


def test_no_answers_gives_the_prior():
    nan = np.full((1, 3), np.nan)
    theta, se = EAP(prior_mean=0.5, prior_sd=0.8).estimate(
        np.ones((1, 3)), np.zeros((1, 3)), np.zeros((1, 3)), 1.0, nan
    )
    assert theta[0] == pytest.approx(0.5, abs=1e-3)
    assert se[0] == pytest.approx(0.8, abs=1e-2)


def test_bad_responses_and_names():
    with pytest.raises(ValueError, match="responses must be 0, 1 or NaN"):
        EAP().estimate(np.ones((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), 1.0, np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="estimator must be one of"):
        make_estimator("wle")
    with pytest.raises(ValueError, match="prior_sd must be > 0"):
        EAP(prior_sd=0)
