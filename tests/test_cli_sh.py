import json

import pandas as pd
import pytest
from click.testing import CliRunner

from qbank import generate_pool, load_pool, read_bundle, save_pool
from qbank.cli.main import cli

SMALL = ["--length", "6", "--examinees", "3000", "--validation-examinees", "6000"]


@pytest.fixture(scope="module")
def pool_csv(tmp_path_factory):
    return str(
        save_pool(generate_pool(150, rng=11, name="small"), tmp_path_factory.mktemp("pool") / "small.csv")
    )


@pytest.fixture(scope="module")
def sh_run(tmp_path_factory, pool_csv):
    out = tmp_path_factory.mktemp("sh")
    result = CliRunner().invoke(
        cli, ["sh", "--pool", pool_csv, "--r-max", "0.25", *SMALL, "--seed", "5", "--out", str(out)]
    )
    return result, out


def test_sh_writes_a_valid_bundle_and_report(sh_run, pool_csv):
    result, out = sh_run
    assert result.exit_code == 0, result.output
    assert (
        "sympson_hetter: converged after" in result.output
        and "validation on 6000 fresh simulees passed" in result.output
    )
    bundle = read_bundle(out / "bundle.json", load_pool(pool_csv))
    assert bundle["simulation"]["seed"] == 5 and bundle["validation"]["seed"] == 6
    assert bundle["selector"] == "sympson_hetter" and bundle["test_length"] == 6
    report = (out / "report.md").read_text()
    assert (
        "Bundle written: `bundle.json`" in report
        and "## Validation on 6000 fresh simulees (seed 6)" in report
    )
    for name in ("convergence.png", "exposure_sorted.png", "k_distribution.png", "exposure_by_stratum.png"):
        assert (out / name).stat().st_size > 5000
    trace = pd.read_csv(out / "trace.csv")
    assert trace["iteration"].max() == bundle["simulation"]["iterations"]


def test_simulate_rechecks_a_bundle_and_accepts_its_k_file(sh_run, pool_csv, tmp_path):
    _, out = sh_run
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--pool",
            pool_csv,
            "--bundle",
            str(out / "bundle.json"),
            "--examinees",
            "3000",
            "--seed",
            "42",
            "--out",
            str(tmp_path / "re"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "bundle re-check, overall: max exposure" in result.output
        and "within the limit r_max + 3 SE" in result.output
    )
    summary = json.loads((tmp_path / "re" / "summary.json").read_text())
    assert summary["stopping"] == {"rule": "fixed_length", "length": 6} and summary["exposure_target"] == 0.25
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--pool",
            pool_csv,
            "--selector",
            "sympson_hetter",
            "--k-file",
            str(out / "k.csv"),
            "--length",
            "6",
            "--examinees",
            "500",
            "--out",
            str(tmp_path / "k"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--pool",
            pool_csv,
            "--bundle",
            str(out / "bundle.json"),
            "--length",
            "8",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert (
        result.exit_code == 2
        and "--bundle fixes the selector" in result.output
        and "drop --length" in result.output
    )


def test_simulate_refuses_a_tampered_bundle(sh_run, pool_csv, tmp_path):
    _, out = sh_run
    bundle = json.loads((out / "bundle.json").read_text())
    bundle["items"][0]["sh_p"] = 1.0 if bundle["items"][0]["sh_p"] < 1 else 0.5
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(bundle))
    result = CliRunner().invoke(
        cli, ["simulate", "--pool", pool_csv, "--bundle", str(tampered), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "bundle_sha256: does not match the document" in result.output
    assert "Traceback" not in result.output


def test_conditional_with_comparison(pool_csv, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "sh",
            "--pool",
            pool_csv,
            "--r-max",
            "0.3",
            "--length",
            "5",
            "--examinees",
            "4000",
            "--validation-examinees",
            "8000",
            "--conditional",
            "--strata",
            "0",
            "--compare",
            "--seed",
            "3",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    bundle = json.loads((tmp_path / "bundle.json").read_text())
    assert bundle["selector"] == "conditional_sympson_hetter" and bundle["strata"] == {"theta_cuts": [0.0]}
    assert all(len(item["sh_p"]) == 2 for item in bundle["items"])
    comparison = pd.read_csv(tmp_path / "comparison.csv", index_col=0)
    assert list(comparison.index) == ["sympson_hetter", "item_eligibility"]
    assert {"iterations", "calibration_seconds", "validation_max_exposure", "rmse"} <= set(comparison.columns)
    assert "Sympson-Hetter against item eligibility" in (tmp_path / "report.md").read_text()


def test_non_convergence_writes_the_report_but_no_bundle(pool_csv, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "sh",
            "--pool",
            pool_csv,
            "--r-max",
            "0.25",
            "--length",
            "6",
            "--examinees",
            "1000",
            "--tol",
            "0",
            "--max-iter",
            "2",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    assert "no bundle written: did NOT converge within 2 iterations" in result.output
    assert not (tmp_path / "bundle.json").exists()
    assert "**No bundle written**" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--r-max", "0"], r"r_max must be in (0, 1], got 0.0"),
        (["--r-max", "1.5"], r"r_max must be in (0, 1], got 1.5"),
        (
            ["--r-max", "0.1", "--length", "20"],
            "needs at least 200 usable items (L / r), but the pool has 150",
        ),
        (["--r-max", "0.5", "--length", "151"], "test length 151 exceeds the pool's 150 items"),
        (["--r-max", "0.3", "--strata", "0,1"], "--strata needs --conditional"),
        (["--r-max", "0.3", "--conditional", "--strata", "1,0"], "cut points must increase"),
        (["--r-max", "0.3", "--conditional", "--strata", "a,b"], "expected numbers separated by commas"),
        (["--r-max", "0.3", "--validation-seed", "0"], "must differ from --seed"),
    ],
)
def test_refusals_are_clear(pool_csv, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["sh", "--pool", pool_csv, *args, "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_sh_with_dodd_records_it_in_the_bundle_and_simulate_reruns_it(pool_csv, tmp_path):
    from qbank import MLE, rules_from_bundle

    runner = CliRunner()
    out = tmp_path / "sh"
    args = ["sh", "--pool", pool_csv, "--r-max", "0.3", "--estimator", "mle", "--dodd", *SMALL]
    result = runner.invoke(cli, [*args, "--seed", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    pool = load_pool(pool_csv)
    bundle = read_bundle(out / "bundle.json", pool)
    b_range = [float(pool.b.min()), float(pool.b.max())]
    assert bundle["estimator"]["name"] == "mle" and bundle["estimator"]["dodd"] is True
    assert bundle["estimator"]["b_range"] == b_range
    # The service's rules and a re-run take the bundle's estimator, Dodd's step included.
    estimator = rules_from_bundle(bundle, pool).estimator
    assert estimator == MLE(dodd=True, b_range=tuple(b_range))
    recheck = [
        "simulate", "--pool", pool_csv, "--bundle", str(out / "bundle.json"), "--examinees", "500"
    ]  # fmt: skip
    result = runner.invoke(cli, [*recheck, "--out", str(tmp_path / "re")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, [*recheck, "--dodd", "--out", str(tmp_path / "re2")])
    assert result.exit_code == 2 and "drop --dodd" in result.output
    result = runner.invoke(
        cli, ["sh", "--pool", pool_csv, "--r-max", "0.3", "--dodd", "--out", str(tmp_path / "bad")]
    )
    assert (
        result.exit_code == 2
        and "Dodd's heuristic is for --estimator mle, got --estimator eap" in result.output
    )
