from click.testing import CliRunner

from qbank.cli.main import cli


def test_demo_study_runs_and_reports(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--examinees", "300", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "randomesque" in result.output and (tmp_path / "report.md").exists()
    for rule in ("max_info", "randomesque", "a_stratified"):
        assert (tmp_path / rule / "summary.json").exists()
