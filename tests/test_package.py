"""The package installs as one `hepmpm` with its CLI; processors/export live under it."""

import subprocess
import sys
from pathlib import Path

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


def test_every_package_folder_is_declared_in_pyproject():
    """Every folder holding Python modules is a regular package (an ``__init__.py``: a namespace
    folder would not be installed) and is listed in pyproject's packages."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    declared = set(
        tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = set()
    for top, name in (("hepmpm", "hepmpm"), ("processors", "hepmpm.processors"),
                      ("export", "hepmpm.export"), ("configs", "hepmpm.configs")):  # fmt: skip
        folders = {p.parent for p in (root / top).rglob("*.py") if "__pycache__" not in p.parts}
        for folder in folders:
            assert (folder / "__init__.py").is_file(), f"{folder} has modules but no __init__.py"
            on_disk.add(".".join((name, *folder.relative_to(root / top).parts)))
    assert on_disk <= declared, f"add to pyproject packages: {sorted(on_disk - declared)}"


def test_a_built_wheel_holds_every_module_config_and_shipped_backbone(tmp_path):
    """What a non-editable install gets: every module, packaged config and shipped weight."""
    import shutil
    import zipfile

    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"  # a copy: setuptools builds in the source tree (build/)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("hepmpm", "processors", "export", "configs"):
        shutil.copytree(root / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("hepmpm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"hepmpm/{p.relative_to(root / 'hepmpm').as_posix()}"
        for p in (root / "hepmpm").rglob("*")
        if p.suffix in (".py", ".pt", ".json") and "__pycache__" not in p.parts
    }
    expected |= {
        f"hepmpm/{top}/{p.relative_to(root / top).as_posix()}"
        for top in ("processors", "export")
        for p in (root / top).rglob("*.py")
    }
    expected |= {f"hepmpm/configs/{p.relative_to(root / 'configs').as_posix()}"
                 for p in (root / "configs").rglob("*.yaml")}  # fmt: skip
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)[:10]}"


def test_presets_are_packaged():
    from hepmpm.config import packaged_config_path

    assert packaged_config_path("generate", "sim.yaml").exists()
    assert packaged_config_path("generate", "data.yaml").exists()


def test_ci_runs_the_readme_test_command():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    command = readme.split("## Test", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
    ci_lines = [line.strip() for line in (root / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_ci_installs_as_the_readme_says_and_quickstart_is_a_command():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    install, run = (line.strip() for line in block.strip().splitlines())
    assert run == "hepmpm quickstart"
    ci = (root / ".ci" / "run").read_text()
    for step in install.split("&&"):  # each pip install of the README, as CI runs it
        args = step.split("install", 1)[1].strip()
        assert f"python -m pip install --quiet {args}" in ci, args
    with pytest.raises(SystemExit) as stop:
        main(["quickstart", "--help"])
    assert stop.value.code == 0
