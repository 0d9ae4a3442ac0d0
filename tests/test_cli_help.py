"""The CLI's help says what ships and what the commands do: the packaged configs each ``--config``
accepts (read from the package, so a new config cannot be left out) and the quickstart's real
steps."""

from __future__ import annotations

import pytest

from hepmpm.cli import main
from hepmpm.config import packaged_configs

#: (command, configs/ folder its --config, --preset or --profile names).
CONFIG_FLAGS = [
    ("pretrain", "pretrain"),
    ("finetune", "finetune"),
    ("tokenizer", "tokenizer"),
    ("generate", "generate"),
    ("quickstart", "quickstart"),
]


def help_text(command: str, capsys) -> str:
    """``hepmpm COMMAND --help``, whitespace collapsed (argparse wraps lines)."""
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(("command", "folder"), CONFIG_FLAGS)
def test_help_lists_every_shipped_config(command, folder, capsys):
    shipped = packaged_configs(folder)
    assert shipped
    text = help_text(command, capsys)
    missing = [name for name in shipped if name not in text]
    assert not missing, f"hepmpm {command} --help omits {missing}"


def test_quickstart_help_describes_its_steps(capsys, tmp_path):
    from hepmpm.pipeline import Pipeline
    from hepmpm.quickstart import load_profile
    from hepmpm.quickstart.chain import plan
    from hepmpm.quickstart.layout import Layout

    text = help_text("quickstart", capsys)
    # The chain fits no tokenizer: its pre-training targets are features and particle ids.
    assert "tokenizer" not in text.lower() and "VQ-VAE" not in text
    for profile in ("tiny", "default"):
        config = load_profile(profile)
        assert config.adapted is not None
        titles = [step.title for step in plan(Pipeline(progress=False), config, Layout(tmp_path))]
        for title in titles:
            verb = title.split()[0]  # generate, skim, pre-train, fine-tune, train, export, ...
            assert verb in text.lower(), f"quickstart --help does not mention {verb!r} ({title})"
    for words in ("from scratch", "shipped with hepmpm", "adapted", "ONNX", "TaggerProcessor",
                  "report"):  # fmt: skip
        assert words in text


#: The tools over finished study folders and the maintainers' shipping: subcommands with their
#: own options (what each ``--help`` must name).
SUBCOMMANDS = [
    (["study", "combine"], ["--study", "--with", "--reference", "--envelope", "--out"]),
    (["study", "probe-scan"], ["--study", "--labels", "--draws", "--score-jets", "--out"]),
    (["study", "rejection-table"], ["--study", "--sample", "--out"]),
    (["pretrained", "ship"], ["--study", "--pretrain", "--pretraining", "--corpus", "--made-by"]),
]


@pytest.mark.parametrize(("command", "options"), SUBCOMMANDS, ids=" ".join)
def test_subcommand_help_names_its_options(command, options, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"usage: hepmpm {' '.join(command)} ")
    missing = [option for option in options if option not in text]
    assert not missing, f"hepmpm {' '.join(command)} --help omits {missing}"


def test_study_help_lists_the_studies_and_the_tools(capsys):
    from hepmpm.studies.runner import STUDIES

    text = help_text("study", capsys)
    for name in (*STUDIES, "combine", "probe-scan", "rejection-table"):
        assert name in text
    assert "ship" in help_text("pretrained", capsys)
