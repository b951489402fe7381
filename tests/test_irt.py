import re
from pathlib import Path

import numpy as np
import pytest

from qbank import irt
from qbank.irt import (
    information,
    information_from_logistic,
    probability,
    probability_elementwise,
    probability_from_logistic,
)


@pytest.mark.parametrize("a,b,c,D", [(1.3, 0.4, 0.2, 1.0), (0.7, -1.2, 0.0, 1.702), (2.1, 1.5, 0.3, 1.0)])
def test_information_matches_numerical_derivative_of_response_function(a, b, c, D):
    # Fisher information of a Bernoulli response: I = P'(theta)^2 / (P Q) (Lord 1980, eq. 5-4).
    theta = np.linspace(-3, 3, 13)
    h = 1e-6
    dp = (irt.probability(theta + h, a, b, c, D) - irt.probability(theta - h, a, b, c, D)) / (2 * h)
    p = irt.probability(theta, a, b, c, D)
    expected = dp**2 / (p * (1 - p))
    np.testing.assert_allclose(irt.information(theta, a, b, c, D), expected, rtol=1e-6)


def test_information_is_expected_squared_score_of_log_likelihood():
    a, b, c = np.array([1.2]), np.array([0.3]), np.array([0.15])
    theta, h = 0.8, 1e-5
    score = {}
    for u in (0.0, 1.0):
        resp = np.array([[u]])
        score[u] = (
            irt.log_likelihood([theta + h], resp, a, b, c) - irt.log_likelihood([theta - h], resp, a, b, c)
        ) / (2 * h)
    p = irt.probability([theta], a, b, c)[0, 0]
    expected = p * score[1.0][0] ** 2 + (1 - p) * score[0.0][0] ** 2
    assert irt.information([theta], a, b, c)[0, 0] == pytest.approx(expected, rel=1e-6)


def test_known_values():
    # 2PL at theta = b: P = 1/2 and I = (D a)^2 / 4.
    assert irt.probability([0.5], 1.0, 0.5)[0, 0] == pytest.approx(0.5)
    assert irt.information([0.5], 1.6, 0.5)[0, 0] == pytest.approx(1.6**2 / 4)
    # 3PL lower asymptote.
    assert irt.probability([-50.0], 1.0, 0.0, 0.25)[0, 0] == pytest.approx(0.25)
    # Rasch: a = 1, c = 0, theta - b = ln 3 -> P = 3/4.
    assert irt.probability([np.log(3)], 1.0, 0.0)[0, 0] == pytest.approx(0.75)


def test_information_peak_is_the_argmax():
    a, b, c = np.array([0.8, 1.5, 2.0]), np.array([-1.0, 0.0, 1.2]), np.array([0.0, 0.2, 0.35])
    grid = np.linspace(-4, 4, 160001)
    numeric = grid[np.argmax(irt.information(grid, a, b, c), axis=0)]
    np.testing.assert_allclose(irt.information_peak(a, b, c), numeric, atol=1e-4)


def test_batch_shapes_and_test_information():
    theta = np.array([-1.0, 0.0, 2.0])
    a, b, c = np.ones(4), np.linspace(-1, 1, 4), np.zeros(4)
    assert irt.probability(theta, a, b, c).shape == (3, 4)
    np.testing.assert_allclose(irt.test_information(theta, a, b, c), irt.information(theta, a, b, c).sum(1))
    elementwise = irt.information_elementwise(theta[:, None], a[None, :], b[None, :], c[None, :])
    np.testing.assert_allclose(elementwise, irt.information(theta, a, b, c))


def test_log_likelihood_skips_missing():
    resp = np.array([[1.0, np.nan, 0.0]])
    a, b, c = np.ones(3), np.zeros(3), np.zeros(3)
    assert irt.log_likelihood([0.0], resp, a, b, c)[0] == pytest.approx(2 * np.log(0.5))


_WRITTEN_OUT = (
    re.compile(r"\+\s*\(1(\.0)?\s*-\s*[^)]*\)\s*\*\s*(expit|logistic|1\s*/)"),  # c + (1 - c) * ...
    re.compile(r"expit\([^)]*\*\s*\("),  # expit(D * a * (theta - b))
    re.compile(r"1(\.0)?\s*\+\s*(np\.)?exp\(\s*-"),  # 1 / (1 + exp(-D * a * (theta - b)))
)


def _written_out(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if any(p.search(line) for p in _WRITTEN_OUT)]


def test_the_3pl_formula_is_written_only_in_the_kernel():
    root = Path(__file__).resolve().parents[1]
    found = {
        str(path.relative_to(root)): _written_out(path.read_text())
        for folder in ("qbank", "service")
        for path in sorted((root / folder).rglob("*.py"))
        if path != root / "qbank" / "irt.py" and "migrations" not in path.parts
    }
    assert {path: lines for path, lines in found.items() if lines} == {}


@pytest.mark.parametrize(
    "line",
    [
        "p = c + (1.0 - c) * expit(D * a * (theta - b))",
        "p_true = pool.c[i] + (1.0 - pool.c[i]) * expit(",
        "return c[:, None, :] + (1.0 - c[:, None, :]) * logistic",
        "p = 1.0 / (1.0 + np.exp(-1.7 * a * (theta - b)))",
    ],
)
def test_the_check_sees_a_written_out_formula(line):
    assert _written_out(line) == [line]


def test_elementwise_kernel_matches_the_batch_functions():
    rng = np.random.default_rng(4)
    theta, a, b, c = rng.normal(size=7), rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.uniform(0, 0.3, 5)
    batch = probability(theta, a, b, c, 1.7)
    assert np.array_equal(probability_elementwise(theta[:, None], a, b, c, 1.7), batch)
    logistic = 1.0 / (1.0 + np.exp(-1.7 * a * (theta[:, None] - b)))  # independent of the kernel
    np.testing.assert_allclose(probability_from_logistic(logistic, c), batch, rtol=1e-14)
    np.testing.assert_allclose(
        information_from_logistic(logistic, a, c, 1.7), information(theta, a, b, c, 1.7), rtol=1e-13
    )
