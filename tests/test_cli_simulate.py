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
