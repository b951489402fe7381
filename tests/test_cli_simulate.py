import json

import pandas as pd
from click.testing import CliRunner

from qbank.cli.main import cli


def test_simulate_writes_the_report(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--pool",
            "data/demo_pool.csv",
            "--examinees",
            "400",
            "--length",
            "10",
            "--seed",
            "3",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_examinees"] == 400 and summary["wall_seconds"] > 0
    exposure = pd.read_csv(out / "exposure.csv")
    assert list(exposure.columns) == ["item_id", "selection_rate", "exposure_rate"]
    assert exposure["exposure_rate"].sum() * 400 == 4000
    examinees = pd.read_parquet(out / "examinees.parquet")
    assert len(examinees) == 400 and len(examinees["items"].iloc[0]) == 10
    assert (out / "exposure_sorted.png").stat().st_size > 1000
    assert (out / "conditional.png").stat().st_size > 1000


def test_simulate_with_k_file(tmp_path):
    pool = pd.read_csv("data/demo_pool.csv")
    k_file = tmp_path / "k.csv"
    pd.DataFrame({"item_id": pool["item_id"], "sh_p": 0.5}).to_csv(k_file, index=False)
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--pool",
            "data/demo_pool.csv",
            "--examinees",
            "300",
            "--length",
            "5",
            "--selector",
            "sympson_hetter",
            "--k-file",
            str(k_file),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["max_exposure"] < 0.7


def test_bad_input_gets_a_clear_message(tmp_path):
    bad_pool = tmp_path / "bad.csv"
    bad_pool.write_text("item_id,a,b,c\nQ1,1,0,0.2\nQ2,-1,0,0.2\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--pool", str(bad_pool), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "a must be in (0, 20]; bad items: ['Q2']" in result.output
    assert "Traceback" not in result.output
    k_file = tmp_path / "k.csv"
    k_file.write_text("item_id,sh_p\nDEMO-0001,1.5\n")
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--pool",
            "data/demo_pool.csv",
            "--selector",
            "sympson_hetter",
            "--k-file",
            str(k_file),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "bad line(s) [2]" in result.output
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--pool",
            "data/demo_pool.csv",
            "--selector",
            "sympson_hetter",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "needs --k-file" in result.output
    result = runner.invoke(
        cli, ["simulate", "--pool", "data/demo_pool.csv", "--length", "601", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "exceeds the pool's 600 items" in result.output


def _run(args, out):
    base = ["simulate", "--pool", "data/demo_pool.csv", "--examinees", "1000", "--length", "3", "--seed", "4"]
    return CliRunner().invoke(cli, [*base, *args, "--out", str(out)])


def test_dodd_heuristic_for_mle_from_the_cli(tmp_path):
    from qbank import load_pool
    from qbank.estimation import dodd_step

    pool = load_pool("data/demo_pool.csv")
    estimates = {}
    for name, args in (("bound", ["--estimator", "mle"]), ("dodd", ["--estimator", "mle", "--dodd"])):
        result = _run(args, tmp_path / name)
        assert result.exit_code == 0, result.output
        estimates[name] = pd.read_parquet(tmp_path / name / "examinees.parquet")
    b_range = (pool.b.min(), pool.b.max())
    # Without --dodd a constant pattern ends at the bound (-5, 5); with it, at Dodd's step from the
    # pool's b range; mixed patterns have a finite MLE either way.
    for name, up, down in (
        ("bound", 5.0, -5.0),
        ("dodd", dodd_step([3], [True], b_range)[0], dodd_step([3], [False], b_range)[0]),
    ):
        run = estimates[name]
        all_correct = run["responses"].map(lambda r: bool(all(r))).to_numpy()
        all_wrong = run["responses"].map(lambda r: not any(r)).to_numpy()
        assert all_correct.sum() > 0 and all_wrong.sum() > 0, name
        assert run["theta_hat"][all_correct].tolist() == [up] * all_correct.sum(), name
        assert run["theta_hat"][all_wrong].tolist() == [down] * all_wrong.sum(), name
        mixed = run["theta_hat"][~(all_correct | all_wrong)]
        assert mixed.between(-5.0, 5.0, inclusive="neither").mean() > 0.9, name
    assert -5.0 < down < up < 5.0


def test_dodd_needs_the_mle_estimator(tmp_path):
    for args in (["--dodd"], ["--estimator", "map", "--dodd"]):
        result = _run(args, tmp_path / "x")
        assert result.exit_code == 2, result.output
        assert "--dodd" in result.output and "Dodd's heuristic is for --estimator mle" in result.output
