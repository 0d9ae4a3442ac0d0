"""Typed YAML configs: unknown keys and wrong types are errors naming the key."""

import pytest

from hepmpm.config import apply_overrides, load_yaml_with_inheritance
from hepmpm.errors import ConfigError
from hepmpm.generate.preset import load_preset


def test_data_inherits_sim_and_states_the_shift():
    sim, data = load_preset("sim"), load_preset("data")
    assert sim.jets == data.jets  # same selection: only the domain differs
    assert data.detector.hcal.energy_scale < sim.detector.hcal.energy_scale
    assert data.detector.tracker.efficiency < sim.detector.tracker.efficiency
    assert data.detector.soft_particles.mean_count > 0 == sim.detector.soft_particles.mean_count
    assert any("alphaSvalue" in s for s in data.pythia.settings)
    assert data.detector.ecal.cell_size == sim.detector.ecal.cell_size  # inherited


def test_unknown_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherit: " + str(_sim_path()) + "\ndetector:\n  hcal:\n    energy_scael: 1.0\n")
    with pytest.raises(ConfigError, match=r"unknown key 'detector\.hcal\.energy_scael'"):
        load_preset(str(bad))


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"jets\.pt_min"):
        load_preset("sim", ["jets.pt_min=fast"])
    with pytest.raises(ConfigError, match=r"tracker\.efficiency"):
        load_preset("sim", ["detector.tracker.efficiency=1.5"])


def test_override_and_inheritance_loop(tmp_path):
    assert load_preset("sim", ["jets.pt_min=450"]).jets.pt_min == 450
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]"]) == {"a": {"b": 1, "c": [1, 2]}}
    loop = tmp_path / "loop.yaml"
    loop.write_text("inherit: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_yaml_with_inheritance(loop)


def _sim_path():
    from hepmpm.config import packaged_config_path

    return packaged_config_path("generate", "sim.yaml")


def test_a_users_config_inherits_a_packaged_one(tmp_path):
    own = tmp_path / "hot_hcal.yaml"
    own.write_text("inherit: sim.yaml\ndetector:\n  hcal:\n    energy_scale: 1.05\n")
    preset = load_preset(str(own))
    assert preset.detector.hcal.energy_scale == 1.05
    assert preset.detector.ecal == load_preset("sim").detector.ecal
    ambiguous = tmp_path / "mine.yaml"
    ambiguous.write_text("inherit: small.yaml\n")
    with pytest.raises(ConfigError, match=r"ambiguous; write one of .*pretrain/small\.yaml"):
        load_yaml_with_inheritance(ambiguous)
    ambiguous.write_text("inherit: pretrain/small.yaml\n")
    assert load_yaml_with_inheritance(ambiguous)["backbone"]["dim"] == 128
    ambiguous.write_text("inherit: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="neither beside it"):
        load_yaml_with_inheritance(ambiguous)


def test_numbers_as_people_write_them(tmp_path):
    """``1e-3`` is a number in a YAML file and in ``--set`` (YAML 1.1 would read a string)."""
    from hepmpm.training.finetune import load_finetune_config

    assert apply_overrides({}, ["a=1e-3", "b=3E4", "c=-2.5e+1", "d=1e3x", "e=.inf"]) == {
        "a": 0.001, "b": 30000.0, "c": -25.0, "d": "1e3x", "e": float("inf"),
    }  # fmt: skip
    assert load_finetune_config("tiny", ["optimizer.lr=1e-3"]).optimizer.lr == 0.001
    user = tmp_path / "lr.yaml"
    user.write_text(
        "inherit: finetune/tiny.yaml\noptimizer:\n  lr: 1e-3\ntrainer:\n  max_steps: 2e1\n"
    )
    config = load_finetune_config(str(user))
    assert config.optimizer.lr == 0.001 and config.trainer.max_steps == 20


def test_yaml_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError) as err:
        load_yaml_with_inheritance(bad)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(bad) in message and "line 2" in message
