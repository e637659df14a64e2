"""``qnode spc``: a CSV column charted, its capability and run-rule violations printed.

The numbers come from the same published references as ``test_spc.py`` (qcc's piston rings and
orange juice cans, NIST's flow-rate example); here they are checked as the command prints them.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from node.cli import app
from node.errors import SpcError

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def trial_rings(tmp_path: Path) -> Path:
    """The 25 phase I samples of qcc's pistonrings, one diameter per row."""
    with (DATA / "pistonrings.csv").open(newline="") as handle:
        rows = [
            [r["diameter"], r["sample"]] for r in csv.DictReader(handle) if r["trial"] == "TRUE"
        ]
    return write_csv(tmp_path / "rings.csv", ["diameter", "sample"], rows)


def spc(*args: str | Path) -> str:
    result = runner.invoke(app, ["spc", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_xbar_r_chart_with_capability(trial_rings: Path) -> None:
    output = spc(
        trial_rings, "--column", "diameter", "--subgroup-column", "sample",
        "--lsl", "73.95", "--usl", "74.05",
    )  # fmt: skip
    assert "xbar-r chart of diameter" in output and "25 subgroups of 5" in output
    assert "CL 74.00118  LCL 73.98805  UCL 74.0143" in output  # qcc: 73.98805 / 74.0143
    assert "CL 0.02276  LCL 0  UCL 0.0481252" in output
    assert "sigma within 0.00978504 (rbar)" in output
    rows = {line.split()[1]: line.split()[3:8:2] for line in output.splitlines() if "│ Cp" in line}
    assert rows["Cp"] == ["1.7033", "1.4914", "1.9148"]  # qcc tour, four decimals
    assert rows["Cpk"] == ["1.6632", "1.4481", "1.8783"]
    assert "Ppk" in output and "expected (within)" in output
    assert "run rules (nelson) on the mean: no violations" in output
    assert "range beyond its limits: none" in output
    plot = [line for line in output.splitlines() if "|" in line and "│" not in line]
    assert any(line.startswith("UCL") and "==" in line for line in plot)
    assert sum(line.count("o") for line in plot) == 50  # 25 means and 25 ranges


def test_subgroup_size_groups_consecutive_rows(trial_rings: Path) -> None:
    by_column = spc(trial_rings, "--column", "diameter", "--subgroup-column", "sample")
    by_size = spc(trial_rings, "--column", "diameter", "--subgroup-size", "5")
    assert by_size == by_column


def test_xbar_s_chart(trial_rings: Path) -> None:
    output = spc(trial_rings, "--column", "diameter", "--subgroup-size", "5", "--chart", "xbar-s")
    assert "CL 0.009240037  LCL 0  UCL 0.01930242" in output  # qcc's S chart
    assert "sigma within 0.00982998 (sbar)" in output


def test_individuals_chart_of_the_nist_flow_rates(tmp_path: Path) -> None:
    rates = [49.6, 47.6, 49.9, 51.3, 47.8, 51.2, 52.6, 52.4, 53.6, 52.1]
    data = write_csv(
        tmp_path / "flow.csv", ["batch", "flow"], [[i, r] for i, r in enumerate(rates)]
    )
    output = spc(data, "--column", "flow", "--usl", "56")
    assert "imr chart of flow" in output and "10 values" in output
    assert "CL 50.81  LCL 45.81591  UCL 55.80409" in output  # NIST: 45.8159 / 55.8041
    assert "Cpu" in output and "Cpl" not in output and "│ Cp " not in output


def test_p_chart_flags_the_two_out_of_control_samples(tmp_path: Path) -> None:
    defectives = [12, 15, 8, 10, 4, 7, 16, 9, 14, 10, 5, 6, 17, 12, 22,
                  8, 10, 5, 13, 11, 20, 18, 24, 15, 9, 12, 7, 13, 9, 6]  # fmt: skip
    rows = [[i + 1, d, 50] for i, d in enumerate(defectives)]
    data = write_csv(tmp_path / "juice.csv", ["sample", "D", "size"], rows)
    output = spc(data, "--column", "D", "--size-column", "size", "--chart", "p")
    assert "CL 0.2313333  LCL 0.05242755  UCL 0.4102391" in output
    assert "Nelson 1: 1 point beyond 3 sigma: samples 15, 23" in output
    assert sum(line.count("X") for line in output.splitlines() if "|" in line) == 2


def test_u_chart_with_varying_units_and_western_electric_rules(tmp_path: Path) -> None:
    rows: list[list[float]] = [[14, 10], [12, 8], [20, 13], [11, 10], [7, 9.5], [10, 10]]
    data = write_csv(tmp_path / "cloth.csv", ["defects", "units"], rows)
    output = spc(
        data, "--column", "defects", "--size-column", "units", "--chart", "u",
        "--rules", "western-electric",
    )  # fmt: skip
    assert "u chart of defects over units" in output
    assert "LCL 0." in output and ".." in output  # per-point limits: a range is printed
    assert "run rules (western-electric) on the defects per unit: no violations" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--column", "width"], "has no column 'width' (columns: diameter, sample)"),
        (["--column", "diameter", "--subgroup-size", "7"], "do not split into subgroups of 7"),
        (["--column", "diameter", "--chart", "xbar-r"], "needs --subgroup-column or"),
        (["--column", "diameter", "--chart", "box"], "unknown chart 'box'"),
        (["--column", "diameter", "--rules", "mine"], "unknown rules 'mine'"),
        (["--column", "diameter", "--lsl", "74.1", "--usl", "74.0"], "must be greater than"),
        (["--column", "diameter", "--chart", "p"], "needs --size-column"),
        (
            ["--column", "diameter", "--subgroup-size", "5", "--subgroup-column", "sample"],
            "not both",
        ),
        (["--column", "diameter", "--subgroup-size", "5", "--chart", "imr"], "individual values"),
    ],
)
def test_bad_options_are_spc_errors(trial_rings: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["spc", str(trial_rings), *args])
    assert isinstance(result.exception, SpcError), result.output
    assert message in str(result.exception)


def test_bad_files_are_spc_errors(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.csv": "cannot read",
        write_csv(tmp_path / "empty.csv", ["x"], []): "has no data rows",
        write_csv(tmp_path / "text.csv", ["x"], [[1.0], ["n/a"]]): "line 3: x is 'n/a', not a",
        write_csv(tmp_path / "nan.csv", ["x"], [[1.0], ["nan"]]): "not a finite number",
        write_csv(tmp_path / "blank.csv", ["x"], [[1.0], [""]]): "line 3: x is '', not a number",
    }
    (tmp_path / "binary.csv").write_bytes(b"x\n\xff\xfe\n")
    cases[tmp_path / "binary.csv"] = "is not a readable CSV file"
    for path, message in cases.items():
        result = runner.invoke(app, ["spc", str(path), "--column", "x"])
        assert isinstance(result.exception, SpcError), (path, result.output)
        assert message in str(result.exception), path


def test_errors_print_one_line_and_exit_2(tmp_path: Path) -> None:
    """Through the console script's entry point, as a user sees it."""
    data = write_csv(tmp_path / "rings.csv", ["diameter"], [[74.0], [74.01]])
    result = subprocess.run(
        [sys.executable, "-m", "node", "spc", str(data), "--column", "width"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"qnode: error: {data} has no column 'width' (columns: diameter)"
    ]
