"""Calibration of items scored in ordered categories: GRM (Samejima 1969) and GPCM (Muraki 1992)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from qbank import polytomous
from qbank.calibration import CalibrationError, Calibrator, calibrate, read_responses
from qbank.calibration._em import Priors
from qbank.calibration._em_poly import PolytomousItems
from qbank.calibration.girth_check import girth_gpcm, girth_grm
from qbank.cli.main import cli
from qbank.pool import ItemPool, generate_pool, load_pool

THRESHOLDS = ["b1", "b2", "b3"]


def simulate(pool: ItemPool, theta, rng, missing=0.0) -> pd.DataFrame:
    """Scores drawn from the category kernel; ``missing`` of the cells blanked at random."""
    p = polytomous.category_probabilities(
        theta[:, None], pool.a, pool.b, pool.c, pool.D, pool.model_codes, pool.threshold_table
    )
    scores = (rng.random(p.shape[:2])[..., None] > np.cumsum(p, axis=-1)).sum(axis=-1).astype(float)
    scores[rng.random(scores.shape) < missing] = np.nan
    return pd.DataFrame(scores, columns=pool.item_id)


def marginal_log_likelihood(pool, responses, theta, weights) -> float:
    """Marginal log-likelihood by a plain loop over persons and their answered items (the scalar reference)."""
    pool = pool.subset(pool.index_of(list(responses.columns)))
    total = 0.0
    for row in responses.to_numpy():
        likelihood = np.ones_like(theta)
        for j, score in enumerate(row):
            if not np.isnan(score):
                p = polytomous.category_probabilities(
                    theta,
                    pool.a[j],
                    pool.b[j],
                    pool.c[j],
                    pool.D[j],
                    pool.model_codes[j],
                    pool.threshold_table[j],
                )
                likelihood *= p[:, int(score)]
        total += np.log(likelihood @ weights)
    return total


def poly_pool(model, n_items=12, rng=2):
    return generate_pool(
        n_items, "2PL", rng=rng, polytomous_share=1.0, polytomous_model=model, n_categories=4
    )


def fit(responses, model, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calibrate(responses, model, **options)


@pytest.fixture(scope="module", params=["GRM", "GPCM"])
def complete(request):
    model = request.param
    pool = poly_pool(model)
    rng = np.random.default_rng(11)
    return model, pool, simulate(pool, rng.normal(size=2000), rng)


# ------------------------------------------------------------------------------------------ kernels
@pytest.mark.parametrize("grm", [True, False])
def test_score_of_the_m_step_is_the_derivative_of_its_objective(grm):
    items = PolytomousItems(grm, np.array([2, 3, 4]))
    thresholds = np.array([[0.3, np.nan, np.nan], [-1.0, 0.5, np.nan], [-1.5, 0.0, 1.2]])
    x = items.parameters(np.array([0.8, 1.2, 1.5]), thresholds)
    np.testing.assert_allclose(items.thresholds(x), thresholds)
    theta = np.linspace(-4, 4, 9)
    r = np.random.default_rng(0).random((9, 3, 4)) * 10 * (items.n_categories[:, None] > np.arange(4))
    priors = Priors(loga=(0.0, 0.5), b=(0.0, 2.0), c=None)
    _, g = items._derivatives(theta, x)
    grad = np.einsum("qjk,qjku->ju", r, g) + items._prior_terms(x, priors)[1]
    h = 1e-6
    for u in range(4):
        step = np.zeros_like(x)
        step[:, u] = h
        numeric = (
            items.objective(theta, r, x + step, priors) - items.objective(theta, r, x - step, priors)
        ) / (2 * h)
        valid = np.column_stack([[True] * 3, items.valid])[:, u]
        np.testing.assert_allclose(grad[valid, u], numeric[valid], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ recovery
def test_recovers_parameters_within_sampling_error(complete):
    model, pool, responses = complete
    report = fit(responses, model, prior_loga=None)
    items = report.items
    assert report.summary["converged"] and report.summary["n_items_polytomous"] == pool.n_items
    assert (items["model"] == model).all()
    z_a = (items["a"] - pool.a) / items["se_a"]
    z_b = (items[THRESHOLDS].to_numpy() - pool.threshold_table) / items[
        [f"se_{c}" for c in THRESHOLDS]
    ].to_numpy()
    # 48 estimates: standard normal errors stay within 3.5 and average a squared z of about 1.
    assert np.abs(z_a).max() < 3.5 and np.abs(z_b).max() < 3.5
    assert 0.4 < np.mean(np.r_[z_a**2, z_b.ravel() ** 2]) < 2.0
    assert np.sqrt(np.mean((items["a"] - pool.a) ** 2)) < 0.15
    assert np.sqrt(np.mean((items[THRESHOLDS].to_numpy() - pool.threshold_table) ** 2)) < 0.2
    if model == "GRM":
        assert (np.diff(items[THRESHOLDS].to_numpy(), axis=1) > 0).all()


def test_agrees_with_girth_on_complete_data(complete):
    """girth's grm_mml / pcm_mml is an independent MML implementation (N(0, 1), 41 Gauss-Legendre points on
    [-4.5, 4.5] against our 41 equally spaced on [-5, 5]; its a by a bounded line search stopping at 1e-3,
    the GRM thresholds by integral equations, the GPCM's by SLSQP item by item). The estimates differ by
    less than one standard error (0.04 absolute; the GRM's by 0.02, a third of an SE); where they differ
    most (girth's GPCM thresholds sit about 0.03 low, all together, 0.75 SE of the narrowest) ours have the
    higher marginal likelihood on a fine independent grid, so the gap is girth stopping short of the
    maximum, not a different maximum."""
    model, _, responses = complete
    report = fit(responses, model, prior_loga=None)
    ours = report.items
    theirs = (girth_grm if model == "GRM" else girth_gpcm)(responses, {"max_iteration": 500})
    columns = ["a", *THRESHOLDS]
    diff = np.abs(ours[columns].to_numpy() - theirs.loc[ours.index, columns].to_numpy())
    se = ours[["se_a", *[f"se_{c}" for c in THRESHOLDS]]].to_numpy()
    assert diff.max() < 0.04
    assert (diff / se).max() < (0.4 if model == "GRM" else 1.0)
    grid = np.linspace(-7, 7, 281)
    weights = np.exp(-0.5 * grid**2)
    theirs_pool = ItemPool.from_arrays(
        theirs["a"],
        np.full(len(theirs), np.nan),
        item_id=theirs.index,
        model=[model] * len(theirs),
        thresholds=theirs[THRESHOLDS].to_numpy(),
    )
    assert (
        marginal_log_likelihood(report.pool, responses, grid, weights / weights.sum())
        >= marginal_log_likelihood(theirs_pool, responses, grid, weights / weights.sum()) - 1e-6
    )


@pytest.mark.parametrize("model", ["GRM", "GPCM"])
def test_two_categories_are_the_2pl(model):
    pool = generate_pool(10, "2PL", rng=4)
    rng = np.random.default_rng(4)
    responses = simulate(pool, rng.normal(size=800), rng, missing=0.2)
    ours = fit(responses, model, tol=1e-9)
    twopl = fit(responses, "2PL", tol=1e-9)
    np.testing.assert_allclose(ours.items["a"], twopl.items["a"], atol=1e-6)
    np.testing.assert_allclose(ours.items["b1"], twopl.items["b"], atol=1e-6)
    np.testing.assert_allclose(ours.items["b"], twopl.items["b"], atol=1e-6)
    np.testing.assert_allclose(ours.summary["log_likelihood"], twopl.summary["log_likelihood"], rtol=1e-10)
    np.testing.assert_allclose(ours.items[["se_a", "se_b"]], twopl.items[["se_a", "se_b"]], rtol=1e-5)
    assert (ours.pool.model_codes == getattr(polytomous, model)).all()


def test_missing_responses_stay_out_of_the_likelihood():
    """The marginal log-likelihood at the estimates, recomputed person by person over the answered items
    only (a plain scalar loop), equals the EM's."""
    pool = poly_pool("GPCM", n_items=6)
    rng = np.random.default_rng(8)
    responses = simulate(pool, rng.normal(size=300), rng, missing=0.3)
    report = fit(responses, "GPCM")
    total = marginal_log_likelihood(
        report.pool, responses, report.latent["theta"].to_numpy(), report.latent["weight"].to_numpy()
    )
    np.testing.assert_allclose(report.summary["log_likelihood"], total, rtol=1e-9)


def test_mixed_run_with_3pl_and_grm_items(tmp_path):
    dichotomous = generate_pool(10, "3PL", rng=6, c_range=(0.1, 0.2))
    graded = poly_pool("GRM", n_items=6, rng=7)
    pool = ItemPool.from_arrays(
        np.r_[dichotomous.a, graded.a],
        np.r_[dichotomous.b, np.full(6, np.nan)],
        np.r_[dichotomous.c, np.zeros(6)],
        item_id=[f"Q{i:02d}" for i in range(16)],
        model=["3PL"] * 10 + ["GRM"] * 6,
        thresholds=np.vstack([np.full((10, 3), np.nan), graded.threshold_table]),
    )
    rng = np.random.default_rng(6)
    responses = simulate(pool, rng.normal(size=3000), rng, missing=0.1)
    report = fit(responses, "GRM", dichotomous_model="3PL")
    items = report.items
    assert list(items["model"]) == ["3PL"] * 10 + ["GRM"] * 6
    assert report.summary["polytomous_items"] == {f"Q{i:02d}": 4 for i in range(10, 16)}
    assert items["c"].iloc[:10].between(0.01, 0.4).all() and (items["c"].iloc[10:] == 0).all()
    assert np.sqrt(np.mean((items["a"] - pool.a) ** 2)) < 0.25
    np.testing.assert_allclose(items[THRESHOLDS].iloc[10:], graded.threshold_table, atol=0.3)
    assert items[THRESHOLDS].iloc[:10].isna().all().all()
    paths = report.save(tmp_path / "mixed.csv")
    reread = load_pool(paths["pool"])
    np.testing.assert_allclose(reread.threshold_table, report.pool.threshold_table, atol=1e-6)
    assert (reread.model_codes == report.pool.model_codes).all()


def test_fixed_parameter_calibration_with_polytomous_anchors():
    pool = poly_pool("GRM", n_items=12, rng=9)
    rng = np.random.default_rng(9)
    # Examinees centred at 0.5: the new items must come out on the anchors' scale.
    responses = simulate(pool, rng.normal(0.5, 1.0, size=2500), rng)
    anchors = pool.subset(np.arange(8))
    report = fit(responses, "GRM", fixed_pool=anchors)
    items = report.items
    assert items["fixed"].sum() == 8
    np.testing.assert_allclose(items[THRESHOLDS].iloc[:8], anchors.threshold_table, atol=1e-6)
    np.testing.assert_allclose(items["a"].iloc[:8], anchors.a, atol=1e-6)
    assert abs(report.summary["latent_mean"] - 0.5) < 0.1
    np.testing.assert_allclose(items[THRESHOLDS].iloc[8:], pool.threshold_table[8:], atol=0.25)


# ------------------------------------------------------------------------------------------ errors
def test_input_errors_name_the_items():
    base = {"Q1": [0, 1, 2, 1, 0], "Q2": [0, 2, 2, 0, 2], "Q3": [1, 1, 1, 1, 1]}
    with pytest.raises(CalibrationError, match=r"Q2 \(categories \[1\] of 0..2 never observed\)"):
        calibrate(pd.DataFrame({k: base[k] for k in ("Q1", "Q2")}), "GRM")
    with pytest.raises(
        CalibrationError, match=r"fewer than 2 observed categories.*Q3 \(all 1 in 5 responses\)"
    ):
        calibrate(pd.DataFrame({k: base[k] for k in ("Q1", "Q3")}), "GPCM")
    with pytest.raises(CalibrationError, match=r"scores above 1.*Q1 \(up to 2\)"):
        calibrate(pd.DataFrame({"Q1": base["Q1"], "Q4": [0, 1, 1, 0, 1]}), "3PL")
    with pytest.raises(CalibrationError, match="dichotomous_model is for a GRM or GPCM run"):
        Calibrator("2PL", dichotomous_model="3PL").fit(pd.DataFrame({"Q4": [0, 1, 1, 0, 1]}))
    with pytest.raises(CalibrationError, match="dichotomous_model must be one of"):
        Calibrator("GRM", dichotomous_model="GPCM").fit(pd.DataFrame({"Q4": [0, 1, 1, 0, 1]}))
    anchors = generate_pool(1, "2PL", rng=1)
    data = pd.DataFrame({anchors.item_id[0]: [0, 2, 1, 0, 1], "Q1": base["Q1"]})
    with pytest.raises(CalibrationError, match=r"fixed_pool: 1 fixed item\(s\).*score 2, pool allows 0..1"):
        calibrate(data, "GRM", fixed_pool=anchors)


def test_cli_calibrates_grm_and_names_bad_items(tmp_path):
    pool = poly_pool("GRM", n_items=5, rng=3)
    rng = np.random.default_rng(3)
    wide = simulate(pool, rng.normal(size=400), rng, missing=0.1)
    wide["person_id"] = [f"p{i}" for i in range(len(wide))]
    long = wide.melt(id_vars="person_id", var_name="item_id", value_name="response").dropna()
    long["response"] = long["response"].astype(int)
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    runner = CliRunner()
    out = tmp_path / "pool.csv"
    result = runner.invoke(
        cli, ["calibrate", "--responses", str(path), "--model", "GRM", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "(5 GRM)" in result.output
    assert (load_pool(out).model_codes == polytomous.GRM).all()

    result = runner.invoke(
        cli,
        ["calibrate", "--responses", str(path), "--dichotomous-model", "3PL", "--out", str(out), "--quiet"],
    )
    assert result.exit_code == 2 and "--dichotomous-model" in result.output and "GRM or GPCM" in result.output
    result = runner.invoke(
        cli, ["calibrate", "--responses", str(path), "--model", "2PL", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 2 and "--responses" in result.output and "scores above 1" in result.output

    gap = long[long["response"] != 1]
    gap.to_csv(path, index=False)
    result = runner.invoke(
        cli, ["calibrate", "--responses", str(path), "--model", "GPCM", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 2 and "I0001 (categories [1] of 0..3 never observed)" in result.output
    path.write_text("person_id,item_id,response\np1,I1,0\np1,I2,-1\n")
    result = runner.invoke(
        cli, ["calibrate", "--responses", str(path), "--model", "GRM", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 2 and "('p1', 'I2', '-1')" in result.output


def test_sparse_storage_and_hierarchical_prior_give_the_dense_result():
    pool = poly_pool("GPCM", n_items=6, rng=12)
    rng = np.random.default_rng(12)
    responses = simulate(pool, rng.normal(size=500), rng, missing=0.4)
    dense = read_responses(responses).with_storage("dense")
    options = {"prior_loga": "hierarchical", "prior_b": (0.0, 3.0)}
    first = fit(dense, "GPCM", **options)
    second = fit(dense.with_storage("sparse"), "GPCM", **options)
    assert first.summary["storage"] == "dense" and second.summary["storage"] == "sparse"
    columns = ["a", *THRESHOLDS, "se_a", "se_b1"]
    np.testing.assert_allclose(first.items[columns], second.items[columns], rtol=1e-9)
    assert first.summary["priors"]["hierarchical"] == ["loga"]
    assert first.summary["priors"]["loga"][0] != 0.0  # the prior mean moved to the items' own
