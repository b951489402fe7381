import pandas as pd
import pytest
from click.testing import CliRunner

from qbank.cli.main import cli
from qbank.study import load_study, run_study


def test_demo_study_config_loads():
    config = load_study("simulations/demo.toml")
    assert config.pool.name == "demo_pool.csv" and config.pool.exists()
    assert [c["name"] for c in config.conditions] == ["max_info", "randomesque", "a_stratified"]


def test_study_runs_conditions_on_the_same_simulees(tmp_path):
    config = load_study("simulations/se_stopping.toml")
    config = type(config)(**{**config.__dict__, "examinees": 300})
    table, results = run_study(config, tmp_path)
    assert list(table.index) == ["max_info", "randomesque"]
    assert (results["max_info"].theta == results["randomesque"].theta).all()
    assert table.loc["randomesque", "max_exposure"] < table.loc["max_info", "max_exposure"]
    assert (tmp_path / "report.md").exists() and (tmp_path / "max_info" / "summary.json").exists()
    assert pd.read_csv(tmp_path / "comparison.csv")["condition"].tolist() == ["max_info", "randomesque"]


@pytest.mark.parametrize(
    "text,message",
    [
        ('pool = "x.csv"\n', "missing 'condition'"),
        (
            'pool = "x.csv"\ncolour = 1\n[[condition]]\nselector = "max_info"\n',
            r"unknown key\(s\) \['colour'\]",
        ),
        ('pool = "x.csv"\n[[condition]]\nname = "a"\n', "'a': missing 'selector'"),
        (
            'pool = "x.csv"\n[stopping]\nrule = "fixed_length"\n[[condition]]\nselector = "max_info"\n',
            "needs 'length'",
        ),
        ("pool = = 1", "cannot read study config"),
        (
            'pool = "x.csv"\nreplications = 0\n[[condition]]\nselector = "max_info"\n',
            "'replications' must be an integer >= 1, got 0",
        ),
    ],
)
def test_bad_study_configs(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_study(path)


def test_study_cli_reports_errors_cleanly(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('pool = "missing.csv"\n[[condition]]\nselector = "max_info"\n')
    result = CliRunner().invoke(cli, ["study", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "no such file" in result.output and "Traceback" not in result.output
