"""The examples run as an analyst would run them (tiny settings)."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_plot_generated_masses(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "plot_generated_masses.py"), "--classes", "Wqq",
         "--jets-per-class", "6", "--workers", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "msoftdrop.png").stat().st_size > 10_000
