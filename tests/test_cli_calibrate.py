import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from qbank.calibration import ResponseMatrix
from qbank.cli.main import cli
from qbank.irt import probability
from qbank.pool import ItemPool, generate_pool, load_pool, save_pool


def _long_responses(pool, n_persons, seed):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_persons)
    y = (rng.random((n_persons, pool.n_items)) < probability(theta, pool.a, pool.b, pool.c, pool.D)).astype(
        float
    )
    y[rng.random(y.shape) < 0.3] = np.nan
    return ResponseMatrix.from_wide(y, item_id=pool.item_id).to_long()


def test_calibrate_writes_a_pool_that_simulate_reads(tmp_path):
    pool = generate_pool(15, "2PL", rng=1)
    responses = tmp_path / "responses.csv"
    _long_responses(pool, 1200, seed=2).to_csv(responses, index=False)
    out = tmp_path / "calibrated.csv"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["calibrate", "--responses", str(responses), "--model", "2pl", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "15 item(s) calibrated" in result.output
    calibrated = load_pool(out)
    assert list(calibrated.item_id) == list(pool.item_id) and np.all(calibrated.D == 1.0)
    assert np.corrcoef(calibrated.b, pool.b)[0, 1] > 0.95
    report = json.loads((tmp_path / "calibrated.report.json").read_text())
    assert report["summary"]["model"] == "2PL" and report["summary"]["converged"] is True
    assert {"n", "se_a", "se_b"} <= set(report["items"][0])
    simulated = runner.invoke(
        cli,
        [
            "simulate",
            "--pool",
            str(out),
            "--examinees",
            "200",
            "--length",
            "5",
            "--out",
            str(tmp_path / "sim"),
        ],
    )
    assert simulated.exit_code == 0, simulated.output


def test_calibrate_with_fixed_pool_and_priors(tmp_path):
    bank = generate_pool(12, "3PL", rng=3)
    new = ItemPool.from_arrays([1.2, 0.9], [0.5, -0.5], [0.2, 0.2], item_id=["NEW1", "NEW2"])
    both = ItemPool.from_arrays(
        np.r_[bank.a, new.a],
        np.r_[bank.b, new.b],
        np.r_[bank.c, new.c],
        item_id=[*bank.item_id, *new.item_id],
    )
    responses = tmp_path / "responses.parquet"
    _long_responses(both, 1500, seed=4).to_parquet(responses)
    save_pool(bank, tmp_path / "bank.csv")
    out = tmp_path / "out" / "pool.csv"
    result = CliRunner().invoke(
        cli,
        [
            "calibrate",
            "--responses",
            str(responses),
            "--fixed-pool",
            str(tmp_path / "bank.csv"),
            "--prior-c",
            "beta:4,16",
            "--latent",
            "histogram",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 item(s) calibrated against 12 fixed" in result.output
    calibrated = load_pool(out)
    assert calibrated.n_items == 14
    np.testing.assert_allclose(calibrated.b[:12], bank.b, atol=1e-6)
    report = json.loads(out.with_name("pool.report.json").read_text())
    assert report["summary"]["priors"]["c"] == [4.0, 16.0]
    assert report["summary"]["latent_estimated"] == "histogram"


def test_calibrate_bad_input_gets_a_clear_message(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text("person_id,item_id,response\np1,Q1,1\np1,Q2,2\np2,Q1,0\n")
    result = runner.invoke(cli, ["calibrate", "--responses", str(bad), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "--responses" in result.output and "Q2 (up to 2)" in result.output and "GRM" in result.output
    assert "Traceback" not in result.output
    bad.write_text("person_id,item_id,response\np1,Q1,1\np1,Q2,1.5\np2,Q1,0\n")
    result = runner.invoke(cli, ["calibrate", "--responses", str(bad), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "--responses" in result.output and "('p1', 'Q2', '1.5')" in result.output

    result = runner.invoke(
        cli,
        ["calibrate", "--responses", str(bad), "--prior-loga", "normal:0", "--out", str(tmp_path / "o.csv")],
    )
    assert result.exit_code == 2 and "--prior-loga" in result.output

    flat = tmp_path / "flat.csv"
    pd.DataFrame(
        {
            "person_id": ["p1", "p2", "p3", "p1", "p2", "p3"],
            "item_id": ["A"] * 3 + ["B"] * 3,
            "response": [1, 0, 1, 1, 1, 1],
        }
    ).to_csv(flat, index=False)
    result = runner.invoke(
        cli,
        [
            "calibrate",
            "--responses",
            str(flat),
            "--model",
            "2PL",
            "--out",
            str(tmp_path / "o.csv"),
            "--quiet",
        ],
    )
    assert result.exit_code == 2 and "B (all 1 in 3 responses)" in result.output
    result = runner.invoke(
        cli,
        [
            "calibrate",
            "--responses",
            str(flat),
            "--model",
            "2PL",
            "--drop-invariant",
            "--out",
            str(tmp_path / "o.csv"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "warning: dropped 1 item(s)" in result.output

    other = tmp_path / "other.csv"
    other.write_text("item_id,a,b,c\nZ1,1,0,0\n")
    result = runner.invoke(
        cli,
        [
            "calibrate",
            "--responses",
            str(flat),
            "--fixed-pool",
            str(other),
            "--out",
            str(tmp_path / "o.csv"),
            "--quiet",
        ],
    )
    assert (
        result.exit_code == 2
        and "--fixed-pool" in result.output
        and "none of its 1 item ids" in result.output
    )


def test_calibrate_names_poorly_determined_items(tmp_path):
    pool = generate_pool(6, "2PL", rng=5)
    responses = tmp_path / "responses.csv"
    _long_responses(pool, 400, seed=6).to_csv(responses, index=False)
    out = tmp_path / "calibrated.csv"
    runner = CliRunner()
    # A limit below every standard error flags every item; the summary line and the report say so.
    result = runner.invoke(
        cli,
        [
            "calibrate",
            "--responses",
            str(responses),
            "--model",
            "2PL",
            "--se-b-limit",
            "0.001",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "6 poorly determined (se_b > 0.001" in result.output
    assert "warning: 6 item(s) have se_b > se_b_limit=0.001" in result.output
    report = json.loads((tmp_path / "calibrated.report.json").read_text())
    assert all(item["poorly_determined"] for item in report["items"])
    assert report["summary"]["n_items_poorly_determined"] == 6

    bad = runner.invoke(
        cli, ["calibrate", "--responses", str(responses), "--se-b-limit", "0", "--out", str(out)]
    )
    assert bad.exit_code == 2 and "--se-b-limit" in bad.output


def test_calibrate_rasch_fixes_a_at_one(tmp_path):
    pool = ItemPool.from_arrays(np.ones(10), np.linspace(-1.5, 1.5, 10), np.zeros(10))
    responses = tmp_path / "responses.csv"
    _long_responses(pool, 1500, seed=4).to_csv(responses, index=False)
    out = tmp_path / "rasch.csv"
    result = CliRunner().invoke(
        cli, ["calibrate", "--responses", str(responses), "--model", "rasch", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    calibrated = load_pool(out)
    np.testing.assert_array_equal(calibrated.a, 1.0)
    np.testing.assert_array_equal(calibrated.c, 0.0)
    np.testing.assert_allclose(calibrated.b, pool.b, atol=0.25)
    report = json.loads((tmp_path / "rasch.report.json").read_text())
    assert report["summary"]["model"] == "Rasch"
    assert all(item["se_a"] is None for item in report["items"])  # a is not estimated
