"""The users file: argon2 salted hashes, roles, permissions."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.review.users import UserStore, add_user, read_users, session_secret


def test_passwords_are_stored_as_salted_argon2_hashes(tmp_path: Path):
    path = tmp_path / "users.yaml"
    add_user(path, "rita", "reviewer", "correct horse battery")
    add_user(path, "sam", "supervisor", "correct horse battery")
    users = read_users(path)
    assert "correct horse" not in path.read_text()
    assert users["rita"]["password_hash"].startswith("$argon2id$")
    assert users["rita"]["password_hash"] != users["sam"]["password_hash"]  # salted
    assert path.stat().st_mode & 0o077 == 0


def test_authentication_and_permissions(tmp_path: Path):
    path = tmp_path / "users.yaml"
    add_user(path, "rita", "reviewer", "correct horse battery")
    add_user(path, "alex", "auditor", "staple battery horse")
    store = UserStore(path)
    rita = store.authenticate("rita", "correct horse battery")
    assert rita is not None and rita.can("decide") and not rita.can("undo") and not rita.can("audit")
    assert store.authenticate("rita", "wrong password!") is None
    assert store.authenticate("nobody", "correct horse battery") is None
    alex = store.authenticate("alex", "staple battery horse")
    assert alex.can("audit") and not alex.can("queue")
    add_user(path, "sam", "supervisor", "a new supervisor")  # picked up without a restart
    assert store.authenticate("sam", "a new supervisor").can("undo")


@pytest.mark.parametrize("name, role, password", [
    ("Rita", "reviewer", "long enough password"), ("rita", "admin", "long enough password"), ("rita", "reviewer", "short")])
def test_bad_users_are_refused(tmp_path: Path, name: str, role: str, password: str):
    with pytest.raises(ValueError):
        add_user(tmp_path / "users.yaml", name, role, password)


def test_a_store_without_users_does_not_start(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        UserStore(tmp_path / "missing.yaml")


def test_the_session_secret_is_created_once_and_kept_private(tmp_path: Path):
    path = tmp_path / "secret"
    first = session_secret(path)
    assert len(first) >= 64 and session_secret(path) == first and path.stat().st_mode & 0o077 == 0
