"""The workbench's commands: adding a user, applying decisions."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.review.store import DecisionLog
from pipeline.review.users import UserStore


def test_review_user_add_reads_the_password_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    users = tmp_path / "users.yaml"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    assert main(["review-user", "add", "rita", "reviewer", f"review.users_file={users}"]) == 0
    assert UserStore(users).authenticate("rita", "a long enough password").role == "reviewer"
    assert "a long enough password" not in capsys.readouterr().out
    assert main(["review-user", "remove", "rita"]) == 2


def test_apply_review_command_prints_what_it_did(output: Path, capsys):
    assert main(["apply-review", str(output)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["decisions_in_force"] == 0 and first["output"] == str(output)
    assert not DecisionLog(output).rows()
    assert main(["apply-review"]) == 2
