"""The one output-folder rule of the training commands (``claim_run_folder``)."""

from __future__ import annotations

import json

import pytest
import torch

from hepmpm.errors import HepmpmError
from hepmpm.training.runs import RUN_RECORD, claim_run_folder, last_checkpoint

RECORD = {"backbone": {"dim": 32, "depth": 2}, "mode": "finetune", "note": "not compared"}
KEYS = ("backbone", "mode")


def _run_folder(tmp_path, record=RECORD, checkpoint=True):
    out = tmp_path / "run"
    out.mkdir()
    (out / RUN_RECORD).write_text(json.dumps(record))
    if checkpoint:
        last_checkpoint(out).parent.mkdir()
        # The least that resuming reads before a trainer exists: a Lightning checkpoint's keys.
        torch.save({"state_dict": {}, "loops": {}}, last_checkpoint(out))
    return out


def test_new_or_empty_folder_starts_afresh(tmp_path):
    assert claim_run_folder(tmp_path / "new", "pre-training", RECORD, KEYS, resume=False) is None
    (tmp_path / "empty").mkdir()
    assert claim_run_folder(tmp_path / "empty", "pre-training", RECORD, KEYS, True) is None


def test_used_folder_needs_resume(tmp_path):
    out = _run_folder(tmp_path)
    with pytest.raises(HepmpmError, match="holds a fine-tuning run; add --resume"):
        claim_run_folder(out, "fine-tuning", RECORD, KEYS, resume=False)
    assert claim_run_folder(out, "fine-tuning", RECORD, KEYS, resume=True) == last_checkpoint(out)
    # Keys outside `compared` may differ.
    other_note = {**RECORD, "note": "changed"}
    assert claim_run_folder(out, "fine-tuning", other_note, KEYS, True) == last_checkpoint(out)


def test_resume_names_the_first_differing_key(tmp_path):
    out = _run_folder(tmp_path)
    wider = {**RECORD, "backbone": {"dim": 64, "depth": 2}}
    with pytest.raises(HepmpmError, match=r"backbone\.dim = 32, this run has backbone\.dim = 64"):
        claim_run_folder(out, "pre-training", wider, KEYS, resume=True)


def test_checkpoint_without_record_or_record_without_checkpoint(tmp_path):
    out = _run_folder(tmp_path)
    (out / RUN_RECORD).unlink()
    with pytest.raises(HepmpmError, match=r"run\.json \(what the run was made with\) is missing"):
        claim_run_folder(out, "pre-training", RECORD, KEYS, resume=True)
    # A run stopped before its first checkpoint starts afresh in place.
    (tmp_path / "b").mkdir()
    stopped = _run_folder(tmp_path / "b", checkpoint=False)
    assert claim_run_folder(stopped, "pre-training", RECORD, KEYS, resume=True) is None


def test_a_file_is_not_a_folder(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(HepmpmError, match="is a file, not a folder"):
        claim_run_folder(path, "tokenizer", RECORD, KEYS, resume=True)
