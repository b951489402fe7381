"""Exposure control on a mixed pool (3PL, GRM and GPCM items): Sympson-Hetter, conditional SH and
item eligibility validate on fresh simulees, and the bundle carries each item's category
parameters (model and thresholds), checked against the pool."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from qbank import FixedLength, ItemPool, generate_pool, load_pool, read_bundle, save_pool, simulate
from qbank.cli.main import cli
from qbank.exposure import (
    build_bundle,
    bundle_sha256,
    calibrate_exposure,
    validate_bundle,
    validate_exposure,
    write_bundle,
)
from qbank.rules import rules_from_bundle, run_test


@pytest.fixture(scope="module")
def pool():
    """150 items: 90 3PL, 40 GRM (4 categories), 20 GPCM (3 categories)."""
    parts = [
        generate_pool(100, rng=11, polytomous_share=0.4, polytomous_model="GRM", n_categories=4),
        generate_pool(50, rng=12, polytomous_share=0.4, polytomous_model="GPCM", n_categories=3),
    ]
    frames = [
        p.to_frame().assign(item_id=lambda f, k=k: f"M{k}-" + f["item_id"]) for k, p in enumerate(parts)
    ]
    return ItemPool.from_frame(pd.concat(frames, ignore_index=True), name="mixed")


@pytest.fixture(scope="module")
def converged(pool):
    calibration = calibrate_exposure(
        pool, 0.25, stopping=FixedLength(6), n_examinees=3000, max_iter=40, rng=5
    )
    validation = validate_exposure(calibration, n_examinees=6000, rng=6)
    return calibration, validation


def test_sympson_hetter_on_a_mixed_pool_validates_on_fresh_simulees(pool, converged):
    calibration, validation = converged
    assert pool.model == "mixed" and set(np.unique(pool.model_codes)) == {0, 1, 2}
    assert calibration.converged, calibration.message
    assert validation.passed, validation.problems
    assert validation.max_exposure[0] <= 0.25 + 3 * np.sqrt(0.25 * 0.75 / validation.n_examinees)
    assert validation.uncontrolled.summary["max_exposure"] > 0.9  # control was needed
    controlled = calibration.sh_p < 1
    assert (pool.model_codes[controlled] != 0).any()  # polytomous items are among the capped


@pytest.mark.parametrize("kind", ["item_eligibility", "conditional"])
def test_item_eligibility_and_conditional_control_validate_on_a_mixed_pool(pool, kind):
    extra = {"method": "item_eligibility"} if kind == "item_eligibility" else {"strata_cuts": [0.0]}
    calibration = calibrate_exposure(
        pool, 0.3, stopping=FixedLength(5), n_examinees=3000, max_iter=40, rng=3, **extra
    )
    assert calibration.converged, calibration.message
    validation = validate_exposure(calibration, n_examinees=6000, rng=4)
    assert validation.passed, validation.problems
    assert (validation.max_exposure <= 0.3 + validation.tolerance).all()


def test_the_bundle_carries_and_checks_the_category_parameters(tmp_path, pool, converged):
    bundle = build_bundle(*converged)
    assert bundle["model"] == "mixed"
    by_id = {item["item_id"]: item for item in bundle["items"]}
    grm = pool.item_id[np.flatnonzero(pool.model_codes == 1)[0]]
    gpcm = pool.item_id[np.flatnonzero(pool.model_codes == 2)[0]]
    dich = pool.item_id[np.flatnonzero(pool.model_codes == 0)[0]]
    assert by_id[grm]["model"] == "GRM" and len(by_id[grm]["thresholds"]) == 3
    assert by_id[gpcm]["model"] == "GPCM" and len(by_id[gpcm]["thresholds"]) == 2
    assert "model" not in by_id[dich] and "thresholds" not in by_id[dich]
    assert validate_bundle(bundle, pool) == []
    loaded = read_bundle(write_bundle(bundle, tmp_path / "bundle.json"), pool)
    rules = rules_from_bundle(loaded)  # on the bundle's own items
    np.testing.assert_array_equal(rules.selector.sh_p, converged[0].sh_p)
    # The same rules on the live pool and on the bundle's items serve the same test.
    own = rules_from_bundle(loaded, pool)
    scores = pool.n_categories - 1

    def answer(position, item):
        return int(scores[item]) if position % 2 else 0

    assert run_test(rules, pool, "q-1", answer).items == run_test(own, pool, "q-1", answer).items
    rerun = simulate(pool, n_examinees=6000, rng=77, keep_examinees=False, **own.simulation_kwargs())
    assert rerun.summary["max_exposure"] <= loaded["r_max"] + loaded["validation"]["tolerance"][0]

    # A recalibrated threshold, or a changed model, is named against the pool.
    frame = pool.to_frame()
    row = int(np.flatnonzero(pool.item_id == grm)[0])
    frame.loc[row, "b3"] += 0.3
    assert validate_bundle(bundle, ItemPool.from_frame(frame, name="mixed")) == [
        f"items: parameters differ from the pool's calibration for {[grm]}"
    ]
    frame = pool.to_frame()
    row = int(np.flatnonzero(pool.item_id == gpcm)[0])
    frame.loc[row, "model"] = "GRM"
    frame.loc[row, ["b1", "b2"]] = sorted(frame.loc[row, ["b1", "b2"]])
    assert validate_bundle(bundle, ItemPool.from_frame(frame, name="mixed"))[0].startswith(
        "items: parameters differ from the pool's calibration for"
    )
    # Edited category parameters in the bundle itself break its pool checksum, or its validity.
    edited = json.loads(json.dumps(bundle))
    edited["items"][row]["thresholds"][0] += 0.1
    edited["bundle_sha256"] = bundle_sha256(edited)
    assert (
        "pool.sha256: does not match the item parameters in items (altered parameters?)"
        in validate_bundle(edited)
    )
    edited["items"][row]["thresholds"] = []
    edited["bundle_sha256"] = bundle_sha256(edited)
    assert any(p.startswith("items") for p in validate_bundle(edited))


def test_qbank_sh_on_a_mixed_pool_file(tmp_path, pool):
    path = save_pool(pool, tmp_path / "mixed.csv")
    out = tmp_path / "sh"
    result = CliRunner().invoke(
        cli,
        [
            "sh",
            "--pool",
            str(path),
            "--r-max",
            "0.25",
            "--length",
            "6",
            "--examinees",
            "3000",
            "--validation-examinees",
            "6000",
            "--seed",
            "5",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "validation on 6000 fresh simulees passed" in result.output
    bundle = read_bundle(out / "bundle.json", load_pool(path))
    assert bundle["model"] == "mixed" and sum("thresholds" in item for item in bundle["items"]) == 60
