"""The package installs as one `hepmpm` with its CLI; processors/export live under it."""

import subprocess
import sys

import hepmpm.export
import hepmpm.processors
import pytest

import hepmpm
from hepmpm.cli import main


def test_version_and_help(capsys):
    assert hepmpm.__version__
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert hepmpm.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "generate" in capsys.readouterr().out


def test_console_script_runs():
    result = subprocess.run(["hepmpm", "--help"], capture_output=True, text=True, check=True)
    assert "generate" in result.stdout


def test_processors_and_export_are_subpackages(tmp_path):
    assert hepmpm.processors.__name__ == "hepmpm.processors"
    assert hepmpm.export.__name__ == "hepmpm.export"
    # Nothing called `processors` or `export` lands at the top of site-packages.
    for name in ("processors", "export"):
        probe = subprocess.run(
            [sys.executable, "-c", f"import importlib.util as u; print(u.find_spec({name!r}))"],
            capture_output=True, text=True, cwd=tmp_path, check=True,
        )  # fmt: skip
        assert probe.stdout.strip() == "None"


def test_presets_are_packaged():
    from hepmpm.config import packaged_config_path

    assert packaged_config_path("generate", "sim.yaml").exists()
    assert packaged_config_path("generate", "data.yaml").exists()
