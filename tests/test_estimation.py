import numpy as np
import pytest
from scipy import integrate, optimize, stats

from qbank import EAP, MAP, MLE, generate_pool, irt, make_estimator


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


def test_default_eap_grid_is_close_to_the_integral(pattern):
    params, resp = pattern
    coarse, _ = EAP().estimate(*params, resp)
    fine, _ = EAP(n_points=801, grid_min=-7, grid_max=7).estimate(*params, resp)
    np.testing.assert_allclose(coarse, fine, atol=5e-3)


def test_map_and_mle_match_numerical_optimisation(pattern):
    params, resp = pattern
    theta_map, se_map = MAP().estimate(*params, resp)
    theta_mle, _ = MLE().estimate(*params, resp)
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
