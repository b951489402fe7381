import copy
import dataclasses
import json

import numpy as np
import pytest
from scipy.stats import norm

from qbank import EAP, FixedLength, Selector, StandardError, generate_pool, simulate
from qbank.exposure import (
    BUNDLE_JSON_SCHEMA,
    BundleError,
    ExposureTargetError,
    build_bundle,
    bundle_sha256,
    calibrate_exposure,
    check_exposure_target,
    comparison_table,
    eligibility_update,
    monte_carlo_se,
    noise_tolerance,
    read_bundle,
    sympson_hetter_update,
    target_margin,
    validate_bundle,
    validate_exposure,
    validation_limit,
    write_bundle,
    write_report,
)
from qbank.pool import ItemPool
from qbank.rules import rules_from_bundle


@pytest.fixture(scope="module")
def pool():
    return generate_pool(150, rng=11, name="small")


@pytest.fixture(scope="module")
def converged(pool):
    calibration = calibrate_exposure(
        pool, 0.25, stopping=FixedLength(6), n_examinees=3000, max_iter=40, rng=5
    )
    validation = validate_exposure(calibration, n_examinees=6000, rng=6)
    return calibration, validation


@pytest.fixture(scope="module")
def bundle(converged):
    return build_bundle(*converged)


def _rehash(bundle):
    bundle["bundle_sha256"] = bundle_sha256(bundle)
    return bundle


# ---------------------------------------------------------------------------- update rules
def test_sympson_hetter_classic_update_by_hand():
    # K = r / P(S) where P(S) > r, else 1 (P(S) == r stays at 1).
    k = sympson_hetter_update(np.array([0.5, 0.2, 0.1, 0.8, 0.0]), 0.2)
    np.testing.assert_allclose(k, [0.4, 1.0, 1.0, 0.25, 1.0])


def test_conditional_update_takes_the_strictest_true_stratum_served_by_each_estimate_stratum():
    selection = np.array([[0.5, 0.1], [0.3, 0.4]])  # P(S_i | true j)
    used = np.zeros((2, 2, 2), dtype=bool)  # [item, true stratum, estimate stratum]
    used[0, 0, 0] = used[0, 0, 1] = used[0, 1, 1] = True
    used[1, 0, 0] = True
    k = sympson_hetter_update(selection, 0.2, used=used)
    # item 0: bounds 0.4 (true 0), 1 (true 1); estimate stratum 1 serves both -> 0.4.
    # item 1: bounds 2/3 (true 0), 0.5 (true 1); stratum 1 is never used -> 1.
    np.testing.assert_allclose(k, [[0.4, 0.4], [2 / 3, 1.0]])
    # Without cross information each stratum's K serves its own examinees (Stocking & Lewis).
    np.testing.assert_allclose(sympson_hetter_update(selection, 0.2), [[0.4, 1.0], [2 / 3, 0.5]])


def test_conditional_update_meets_every_true_stratum_at_current_rates():
    rng = np.random.default_rng(3)
    share = rng.random((200, 3, 3)) * (rng.random((200, 3, 3)) < 0.5)  # s_ijk, many unused levers
    k = sympson_hetter_update(share.sum(axis=2), 0.2, used=share > 0)
    exposure = (k[:, None, :] * share).sum(axis=2)  # P(A_i | j) = sum_k K_ik s_ijk
    assert exposure.max() <= 0.2 + 1e-12
    # One stratum is the classic rule.
    single = share[:, :1, :1]
    np.testing.assert_allclose(
        sympson_hetter_update(single.sum(axis=2), 0.2, used=single > 0)[:, 0],
        sympson_hetter_update(single[:, 0, 0], 0.2),
    )


def test_eligibility_update_by_hand():
    # p <- min(1, p r / P(A)); never administered -> 1 (van der Linden & Veldkamp 2004).
    p = eligibility_update(np.array([1.0, 0.3, 0.3, 0.8, 0.5]), np.array([0.5, 0.1, 0.0, 0.2, 0.05]), 0.2)
    np.testing.assert_allclose(p, [0.4, 0.6, 1.0, 0.8, 1.0])
    used = np.zeros((2, 2, 2), dtype=bool)
    used[0, :, 0] = True
    p = eligibility_update(
        np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([[0.4, 0.1], [0.0, 0.0]]), 0.2, used=used
    )
    np.testing.assert_allclose(p, [[0.25, 1.0], [1.0, 1.0]])


# ---------------------------------------------------------------------------- noise
def test_monte_carlo_se_and_tolerance_known_values():
    assert monte_carlo_se(0.25, 100_000) == pytest.approx(np.sqrt(0.1875 / 100_000))
    assert noise_tolerance(0.2, 20_000, 1) == pytest.approx(norm.ppf(0.95) * np.sqrt(0.16 / 20_000))
    assert noise_tolerance(0.2, 20_000, 1, k_examinees=20_000) == pytest.approx(
        np.sqrt(2) * noise_tolerance(0.2, 20_000, 1)
    )
    np.testing.assert_array_equal(noise_tolerance(0.2, np.array([100, 0]), np.array([5, 5]))[1], np.inf)


def test_tolerance_is_the_quantile_of_the_maximum_of_n_deviates():
    # Independent check: 95 % quantile of the max of 140 standard normals, by simulation.
    maxima = np.random.default_rng(0).standard_normal((20_000, 140)).max(axis=1)
    z = noise_tolerance(0.5, 1, 140) / 0.5
    assert z == pytest.approx(np.quantile(maxima, 0.95), abs=0.03)


# ---------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("r_max", [0.0, -0.1, 1.5, float("nan")])
def test_refuses_r_outside_unit_interval(pool, r_max):
    with pytest.raises(ExposureTargetError, match=r"r_max must be in \(0, 1\]"):
        calibrate_exposure(pool, r_max, stopping=FixedLength(5))


def test_refuses_impossible_lengths(pool):
    with pytest.raises(ExposureTargetError, match="test length 151 exceeds the pool's 150 items"):
        check_exposure_target(pool, 1.0, FixedLength(151))
    with pytest.raises(
        ExposureTargetError, match=r"needs at least 200 usable items \(L / r\), but the pool has 150"
    ):
        calibrate_exposure(pool, 0.1, stopping=FixedLength(20))
    # Variable length: the minimum length is what every examinee takes.
    with pytest.raises(ExposureTargetError, match="at least 8 items needs at least 160"):
        check_exposure_target(pool, 0.05, StandardError(0.3, 8, 40))
    check_exposure_target(pool, 1.0, FixedLength(150))  # r = 1 and L = pool size are possible
    check_exposure_target(pool, 0.2, FixedLength(30))  # exactly L / r items


def test_bad_arguments_name_the_argument(pool):
    with pytest.raises(ValueError, match="method must be one of"):
        calibrate_exposure(pool, 0.3, stopping=FixedLength(5), method="magic")
    with pytest.raises(ValueError, match="strata_cuts must be increasing"):
        calibrate_exposure(pool, 0.3, stopping=FixedLength(5), strata_cuts=[1.0, 0.0])
    with pytest.raises(ValueError, match="sh_p_start must have shape"):
        calibrate_exposure(pool, 0.3, stopping=FixedLength(5), sh_p_start=np.ones(3))


# ---------------------------------------------------------------------------- the simulator's tallies
def test_cross_tallies_follow_the_estimate_each_step_used(pool):
    cuts = np.array([-0.5, 0.5])
    selector = Selector("conditional_sympson_hetter", sh_p=np.full((150, 3), 0.7), theta_cuts=cuts)
    result = simulate(
        pool, n_examinees=400, stopping=FixedLength(4), selector=selector, rng=2, strata_cuts=cuts
    )
    np.testing.assert_array_equal(result.cross_selection_count.sum(axis=2), result.stratum_selection_count)
    np.testing.assert_array_equal(
        result.cross_administration_count.sum(axis=(1, 2)), result.administration_count
    )
    assert (result.cross_selection_count >= result.cross_administration_count).all()
    # Independent recount: the estimate before step t is the EAP of the first t answers.
    expected = np.zeros_like(result.cross_administration_count)
    true_stratum = np.searchsorted(cuts, result.theta, side="right")
    estimator = EAP()
    for t in range(4):
        if t == 0:
            theta_hat = np.zeros(result.n_examinees)
        else:
            items = result.administered[:, :t].astype(int)
            theta_hat, _ = estimator.estimate(
                pool.a[items],
                pool.b[items],
                pool.c[items],
                pool.D[items],
                result.responses[:, :t].astype(float),
            )
        estimate_stratum = np.searchsorted(cuts, theta_hat, side="right")
        np.add.at(expected, (result.administered[:, t].astype(int), true_stratum, estimate_stratum), 1)
    np.testing.assert_array_equal(result.cross_administration_count, expected)


# ---------------------------------------------------------------------------- the procedure
def test_withdrawn_items_count_as_selected_and_the_top_item_is_capped(pool):
    calibration = calibrate_exposure(
        pool, 0.3, stopping=FixedLength(5), n_examinees=4000, warm_up_examinees=4000, max_iter=2, rng=1
    )
    selection, exposure = (
        calibration.final_rates["selection"][:, 0],
        calibration.final_rates["exposure"][:, 0],
    )
    first = np.argmax(selection)
    # Everyone starts at theta = 0 with the same best item: selected by all, administered to ~K = r'
    # (r less the margin), withdrawn (never offered again) for the rest.
    targets = calibration.trace["target"].to_numpy()
    assert selection[first] == 1.0
    assert calibration.sh_p[first] == pytest.approx(targets[-1])
    assert exposure[first] == pytest.approx(targets[0], abs=4 * np.sqrt(0.21 / 4000))
    assert 0.3 - targets[0] == pytest.approx(target_margin(0.3, 3 * 4000, (selection > 0.3).sum()), rel=0.2)
    assert (selection >= exposure).all() and selection.sum() > exposure.sum()
    np.testing.assert_allclose(exposure.sum(), 5.0)  # every test still has 5 items


def test_converges_within_noise_and_the_trace_shows_why(converged):
    calibration, validation = converged
    assert calibration.converged, calibration.message
    trace = calibration.trace
    window = calibration.settings["window"]
    last = trace[trace["iteration"] > calibration.n_iterations - window]
    assert len(last) == window and last["within_tolerance"].all() and last["k_stable"].all()
    assert (last["max_exposure"] <= last["target"] + last["tolerance"]).all()
    # The target sits below r by the margin for the simulees behind the averaged parameters.
    assert (last["target"] < 0.25).all()
    margin = target_margin(0.25, window * 3000, last["n_capped"].iloc[-1])
    assert 0.25 - last["target"].iloc[-1] == pytest.approx(margin, rel=0.1)  # n capped at r vs at r'
    assert trace["max_exposure"].iloc[0] == 1.0  # K = 1 at the start: plain maximum information
    assert not trace["within_tolerance"].iloc[0]
    # The default tolerance comes from the noise of 3000 simulees with the items at the cap.
    row = trace.iloc[-1]
    assert row["tolerance"] == pytest.approx(noise_tolerance(0.25, 3000, row["n_capped"], k_examinees=3000))
    assert validation.passed, validation.problems
    assert validation.max_exposure[0] <= 0.25 + validation.tolerance[0]
    n_val = validation.n_examinees
    assert validation.tolerance[0] == pytest.approx(3 * np.sqrt(0.25 * 0.75 / n_val))
    assert validation_limit(0.25, n_val) == pytest.approx(0.25 + validation.tolerance[0])
    assert validation.items_over_limit().empty
    assert validation.uncontrolled.summary["max_exposure"] == 1.0
    figures = validation.figures()
    assert figures.loc["items_over_limit", "with exposure control"] == 0
    assert (
        figures.loc["overlap_rate", "with exposure control"]
        < figures.loc["overlap_rate", "without exposure control"]
    )


@pytest.mark.parametrize("window", [1, 2, 3])
def test_convergence_needs_window_consecutive_passing_iterations(pool, window):
    # r = 1 needs no control: every iteration passes, so it stops after exactly `window` of them.
    calibration = calibrate_exposure(
        pool, 1.0, stopping=FixedLength(5), n_examinees=200, window=window, warm_up_examinees=200, rng=1
    )
    assert calibration.converged and calibration.n_iterations == window
    np.testing.assert_array_equal(calibration.sh_p, 1.0)
    # With a warm-up, its iterations (on fewer simulees) never count towards the window.
    warmed = calibrate_exposure(pool, 1.0, stopping=FixedLength(5), n_examinees=200, window=window, rng=1)
    assert warmed.n_iterations == window + 1
    assert warmed.trace["warm_up"].tolist() == [True] + [False] * window
    assert warmed.trace["n_examinees"].tolist() == [50] + [200] * window


def test_zero_tolerance_does_not_converge_and_says_so(pool):
    calibration = calibrate_exposure(
        pool, 0.25, stopping=FixedLength(6), n_examinees=1000, max_iter=3, tol=0.0, rng=5
    )
    assert not calibration.converged and calibration.n_iterations == 3
    assert calibration.message.startswith("did NOT converge within 3 iterations")
    validation = validate_exposure(calibration, n_examinees=500, rng=9, compare_uncontrolled=False)
    assert not validation.passed and "did not converge" in validation.problems[0]
    with pytest.raises(BundleError, match="did not converge"):
        build_bundle(calibration, validation)


def test_target_margin_known_values():
    # z_n sqrt(r (1 - r) / N_K), z_n the 0.99 quantile of the largest of n standard normals.
    assert target_margin(0.2, 60_000, 1) == pytest.approx(norm.ppf(0.99) * np.sqrt(0.16 / 60_000))
    assert target_margin(0.2, 60_000, 130) == pytest.approx(
        norm.ppf(0.99 ** (1 / 130)) * np.sqrt(0.16 / 60_000)
    )
    np.testing.assert_array_equal(target_margin(0.2, np.array([4, 0]), np.array([1, 1]))[1], 0.0)
    assert target_margin(0.2, 240_000, 5) == pytest.approx(target_margin(0.2, 60_000, 5) / 2)


def test_validation_lists_items_over_the_limit(converged):
    """Uncapped parameters on the converged rules: the first items exceed r + 3 SE and are named."""
    calibration = dataclasses.replace(converged[0], sh_p=np.ones_like(converged[0].sh_p))
    validation = validate_exposure(calibration, n_examinees=2000, rng=21, compare_uncontrolled=False)
    over = validation.items_over_limit()
    limit = validation_limit(0.25, 2000)
    assert not validation.passed and f"exceeds the limit r_max + 3 SE = {limit:.4f}" in validation.problems[0]
    rates = validation.controlled.exposure_rate
    assert set(over["item_id"]) == set(calibration.pool.item_id[rates > limit])
    assert over["exposure_rate"].is_monotonic_decreasing and (over["limit"] == limit).all()


def test_validation_needs_a_fresh_seed(converged):
    with pytest.raises(ValueError, match="seed 5 is the calibration's seed"):
        validate_exposure(converged[0], n_examinees=100, rng=5)


def test_item_eligibility_reaches_the_same_target_through_the_same_selector(pool, converged):
    sh_calibration, _sh_validation = converged
    eligibility = calibrate_exposure(
        pool, 0.25, stopping=FixedLength(6), n_examinees=3000, max_iter=40, rng=5, method="item_eligibility"
    )
    assert eligibility.converged and eligibility.selector.rule == "sympson_hetter"
    # From K = 1 the first two iterations run identical parameters on the same draws (after iteration 1,
    # min(1, r / P(A)) = r / P(S) where P(S) > r, else 1, because nothing was withdrawn), so they match.
    columns = ["max_exposure", "max_selection_rate"]
    np.testing.assert_array_equal(eligibility.trace[columns].iloc[:2], sh_calibration.trace[columns].iloc[:2])
    assert eligibility.trace["k_shift"].iloc[0] == sh_calibration.trace["k_shift"].iloc[0]
    validation = validate_exposure(eligibility, n_examinees=6000, rng=6)
    assert validation.passed, validation.problems
    table = comparison_table({"SH": converged, "eligibility": (eligibility, validation)})
    assert list(table.index) == ["SH", "eligibility"]
    assert table.loc["SH", "iterations"] == sh_calibration.n_iterations
    assert table.loc["eligibility", "rmse"] == pytest.approx(validation.controlled.summary["rmse"])


def test_conditional_sympson_hetter_controls_each_true_stratum(pool):
    calibration = calibrate_exposure(
        pool, 0.3, stopping=FixedLength(5), n_examinees=4000, max_iter=40, rng=3, strata_cuts=[0.0]
    )
    assert calibration.converged, calibration.message
    assert calibration.sh_p.shape == (150, 2) and calibration.selector.rule == "conditional_sympson_hetter"
    validation = validate_exposure(calibration, n_examinees=8000, rng=4)
    assert validation.passed, validation.problems
    assert validation.max_exposure.shape == (2,)
    assert (validation.max_exposure <= 0.3 + validation.tolerance).all()
    # Unconditional control would leave the strata far above r: max-info gives ~1 in each.
    strata = validation.stratum_frame()
    assert (strata["max_exposure_uncontrolled"] > 0.9).all()
    assert (strata["items_over_limit"] == 0).all()


# ---------------------------------------------------------------------------- the bundle
def test_bundle_round_trip(tmp_path, pool, converged, bundle):
    calibration, _validation = converged
    assert validate_bundle(bundle, pool) == []
    path = write_bundle(bundle, tmp_path / "bundle.json")
    loaded = read_bundle(path, pool)
    assert loaded == json.loads(json.dumps(bundle))
    assert loaded["schema"] == "qbank.exposure-bundle/1" and loaded["pool"]["sha256"] == pool.sha256()
    assert (
        loaded["simulation"]["iterations"] == calibration.n_iterations == len(loaded["simulation"]["trace"])
    )
    assert loaded["validation"]["seed"] == 6 and loaded["validation"]["converged"] is True
    settings = rules_from_bundle(loaded, pool).simulation_kwargs()
    np.testing.assert_array_equal(settings["selector"].sh_p, calibration.sh_p)
    assert settings["stopping"] == FixedLength(6) and settings["estimator"] == EAP()
    # Re-running the bundle on fresh simulees stays within its validation limit.
    rerun = simulate(pool, n_examinees=6000, rng=77, keep_examinees=False, **settings)
    assert rerun.summary["max_exposure"] <= loaded["r_max"] + loaded["validation"]["tolerance"][0]


def test_bundle_maps_items_by_id_not_position(pool, bundle):
    shuffled = pool.subset(np.arange(pool.n_items)[::-1])
    settings = rules_from_bundle(bundle, shuffled).simulation_kwargs()
    assert settings["selector"].sh_p[0] == bundle["items"][-1]["sh_p"]


def test_the_json_schema_is_valid_draft_2020_12():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(BUNDLE_JSON_SCHEMA)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda b: b["items"][3].update(sh_p=1.5),
            r"items\[3\]\.sh_p: 1\.5 is greater than the maximum of 1",
        ),
        (lambda b: b.pop("r_max"), "'r_max' is a required property"),
        (
            lambda b: b.update(schema="qbank.exposure-bundle/2"),
            "schema: 'qbank.exposure-bundle/1' was expected",
        ),
        (lambda b: b["stopping"].update(length=0), r"stopping\.length: 0 is less than the minimum of 1"),
        (
            lambda b: b["items"][0].update(a=-1.0),
            r"items\[0\]\.a: -1\.0 is less than or equal to the minimum of 0",
        ),
        (lambda b: b.update(extra=1), "Additional properties are not allowed"),
        (lambda b: _rehash(b)["items"][5].update(b=9.0), "bundle_sha256: does not match the document"),
        (
            lambda b: _rehash(b["items"][5].update(b=9.0) or b),
            "pool.sha256: does not match the item parameters",
        ),
        (
            lambda b: _rehash(b["validation"].update(passed=False) or b),
            "validation.passed: the validation did not pass",
        ),
        (lambda b: _rehash(b["simulation"].update(converged=False) or b), "simulation.converged"),
        (
            lambda b: _rehash(b["validation"].update(controlled_max_exposure=[0.4]) or b),
            r"controlled_max_exposure\[0\]: 0\.4000 exceeds r_max \+ tolerance",
        ),
        (
            lambda b: _rehash(b["validation"].update(seed=5) or b),
            "validation.seed: 5 is the calibration's seed",
        ),
        (
            lambda b: _rehash(b.update(selector="conditional_sympson_hetter") or b),
            "strata: conditional_sympson_hetter needs strata.theta_cuts",
        ),
        (
            lambda b: _rehash(b.update(test_length=7) or b),
            "test_length: 7 disagrees with the stopping rule's 6",
        ),
        (
            lambda b: _rehash(b["items"][1].update(item_id=b["items"][0]["item_id"]) or b),
            r"items\[1\]\.item_id: duplicate",
        ),
        (lambda b: _rehash(b.update(created_at="yesterday") or b), "created_at: not an ISO 8601 date-time"),
    ],
)
def test_validator_names_the_failing_field(bundle, mutate, message):
    broken = copy.deepcopy(bundle)
    mutate(broken)
    problems = validate_bundle(broken)
    assert any(__import__("re").search(message, p) for p in problems), problems
    with pytest.raises(BundleError, match="exposure bundle refused"):
        from qbank.exposure import check_bundle

        check_bundle(broken)


def test_bundle_against_a_live_pool_names_the_changed_items(pool, bundle):
    frame = pool.to_frame()
    frame.loc[[2, 40], "b"] += 0.5
    recalibrated = ItemPool.from_frame(frame, name="small")
    problems = validate_bundle(bundle, recalibrated)
    assert problems == [
        f"items: parameters differ from the pool's calibration for {[pool.item_id[2], pool.item_id[40]]}"
    ]
    assert validate_bundle(bundle, pool.subset(np.arange(149)))[0].startswith(
        "items: item(s) not in the pool"
    )


def test_read_bundle_reports_bad_json_with_position(tmp_path, pool):
    path = tmp_path / "b.json"
    path.write_text('{"schema": \n  oops}')
    with pytest.raises(BundleError, match="not valid JSON: Expecting value at line 2 column 3"):
        read_bundle(path, pool)
    with pytest.raises(BundleError, match="cannot read"):
        read_bundle(tmp_path / "missing.json")
    assert validate_bundle([1, 2]) == ["(document): must be a JSON object, got list"]


def test_report_folder(tmp_path, converged):
    calibration, validation = converged
    paths = write_report(tmp_path, calibration, validation, bundle_path=tmp_path / "bundle.json")
    report = paths["report"].read_text()
    assert f"converged after {calibration.n_iterations} iterations" in report
    assert "Price of exposure control in RMSE" in report and "Bundle written" in report
    for name in ("convergence_plot", "k_plot", "exposure_plot", "stratum_plot", "conditional_plot"):
        assert paths[name].stat().st_size > 5000, name
    k_file = paths["k"].read_text().splitlines()
    assert k_file[0] == "item_id,sh_p" and len(k_file) == 151
