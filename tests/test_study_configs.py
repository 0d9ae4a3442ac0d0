"""Study configs carry settings, not results: a short header that says what a config runs and
where its results are; no measured figures in comments; the tiny-mode settings that several
studies share said once (configs/studies/tiny/) and resolved exactly as when they were repeated."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hepmpm.config import packaged_config_path
from hepmpm.errors import ConfigError
from hepmpm.studies.common import load_study_config, study_yaml
from hepmpm.studies.label_efficiency import LabelEfficiencyConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = packaged_config_path()
#: The resolved `--tiny` settings of every study config that has them, as they were before the
#: shared block moved to configs/studies/tiny/ (update it when a tiny setting changes on purpose).
SNAPSHOT = Path(__file__).parent / "data" / "tiny_study_configs.json"
#: What a measured figure looks like in a comment: a spread, an accuracy-like decimal, a ratio
#: of labels or rejections, a wall time.
FIGURE = re.compile(
    r"±|\+/-|\b0\.\d{2,}\b|\b\d+(\.\d+)?\s*[x×]\s+(fewer|more|less|higher|lower|the)\b"
    r"|\b\d+(\.\d+)?\s*(h|hours?|min|minutes?)\b"
)


def _header(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return lines[: next((i for i, x in enumerate(lines) if not x.startswith("#")), len(lines))]


def _comments(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.search(r"(?:^|\s)#(.*)$", line)
        if match:
            found.append((number, match.group(1)))
    return found


ALL = sorted(CONFIGS.rglob("*.yaml"))
STUDIES = sorted((CONFIGS / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_a_config_header_is_at_most_three_lines(path):
    assert 1 <= len(_header(path)) <= 3, _header(path)


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_a_study_config_links_its_results_and_quotes_no_figures(path):
    header = " ".join(_header(path))
    linked = re.search(r"docs/results/([\w-]+)/", header)
    if linked:
        assert (ROOT / "docs" / "results" / linked.group(1)).is_dir(), linked.group(0)
    else:
        assert "not yet run" in header, "link docs/results/<study>/ or say it is not yet run"
    figures = [(n, c) for n, c in _comments(path) if FIGURE.search(c)]
    assert not figures, f"measured figures belong in docs/results/: {figures}"


def test_the_figure_pattern_catches_results_and_spares_settings():
    for result in ("0.763 ± 0.011", "accuracy 0.82", "scratch needs 6.1x the labels",
                   "3-4x higher rejection", "About 2 h on a quiet machine", "93 min"):  # fmt: skip
        assert FIGURE.search(result), result
    for setting in ("a 4 x 64 backbone", "60 % masked", "1600 steps of 64", "1e6-jet corpus",
                    "labels up to 1e5", "the decoder stays 2 x 64"):  # fmt: skip
        assert not FIGURE.search(setting), setting


def test_tiny_configs_resolve_as_before_the_shared_block():
    expected = json.loads(SNAPSHOT.read_text())
    for name, settings in expected.items():
        path = CONFIGS / "studies" / f"{name}.yaml"
        assert study_yaml(path, tiny=True) == settings, name


def test_a_tiny_section_inherits_the_shared_block_from_any_folder(tmp_path):
    """A user's config beside none of the packaged files still finds the shared tiny block; a
    tiny `inherit:` that names nothing is a one-line error naming it."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("inherit: label_efficiency.yaml\ntiny: {labels: [12]}\n")
    config = load_study_config(LabelEfficiencyConfig, mine, tiny=True)
    assert config.labels == [12] and config.pretrain.config == "tiny"
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherit: label_efficiency.yaml\ntiny: {inherit: tiny/nothing.yaml}\n")
    with pytest.raises(ConfigError, match=r"tiny\.inherit: tiny/nothing\.yaml.*neither beside"):
        load_study_config(LabelEfficiencyConfig, bad, tiny=True)
