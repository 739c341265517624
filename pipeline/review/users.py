"""Workbench users: a local YAML file of names, roles and argon2 password hashes.

The file is the site's to manage (`medrec review-user add NAME ROLE`); it holds no
plain passwords. Roles grant permissions, checked on every request:
- reviewer: the queue, items, page images, decisions, terminology search;
- supervisor: all of that, plus reassigning items and undoing decisions;
- auditor: the access audit log only.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("reviewer", "supervisor", "auditor")
PERMISSIONS: dict[str, frozenset[str]] = {
    "reviewer": frozenset({"queue", "decide", "search"}),
    "supervisor": frozenset({"queue", "decide", "search", "assign", "undo"}),
    "auditor": frozenset({"audit"}),
}
_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
_HASHER = PasswordHasher()  # argon2id with a random salt per hash (argon2-cffi defaults)
# Verified against for unknown names, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


class UserStore:
    """The users file, read at start and re-read when it changes (a site adds a reviewer)."""

    def __init__(self, path: Path):
        self.path = path
        self._mtime: float | None = None
        self._users: dict[str, tuple[str, str]] = {}
        self._reload()
        if not self._users:
            raise FileNotFoundError(f"no users in {path}: add one with `medrec review-user add NAME ROLE review.users_file={path}`")

    def _reload(self) -> None:
        mtime = self.path.stat().st_mtime if self.path.is_file() else None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        self._users = {name: (entry["role"], entry["password_hash"]) for name, entry in read_users(self.path).items()}

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password matches, else None (same work either way)."""
        self._reload()
        role, stored = self._users.get(name, (None, _DUMMY_HASH))
        try:
            _HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return User(name, role) if role is not None else None

    def get(self, name: str) -> User | None:
        self._reload()
        entry = self._users.get(name)
        return User(name, entry[0]) if entry else None

    def names(self, role: str | None = None) -> list[str]:
        self._reload()
        return sorted(n for n, (r, _) in self._users.items() if role is None or r == role)


def read_users(path: Path) -> dict[str, dict[str, str]]:
    """name -> {role, password_hash}; an empty dict for a missing file. Bad entries raise."""
    if not path.is_file():
        return {}
    tree = yaml.safe_load(path.read_text()) or {}
    users = tree.get("users") or {}
    for name, entry in users.items():
        if not _NAME.match(str(name)) or entry.get("role") not in ROLES or not entry.get("password_hash"):
            raise ValueError(f"users file {path}: entry {name!r} needs a lower-case name, a role in {ROLES} "
                             "and a password_hash")
    return users


def add_user(path: Path, name: str, role: str, password: str) -> None:
    """Add or replace a user; the file is written owner-only."""
    if not _NAME.match(name):
        raise ValueError("user names are 2-64 characters: lower-case letters, digits, '.', '_', '-'")
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    if len(password) < 10:
        raise ValueError("passwords need at least 10 characters")
    users = read_users(path)
    users[name] = {"role": role, "password_hash": _HASHER.hash(password)}
    _write_private(path, yaml.safe_dump({"users": users}, sort_keys=True))


def session_secret(path: Path) -> bytes:
    """The key that signs session cookies: read from `path`, created (owner-only) if absent,
    so sessions survive a restart and a new key logs everyone out."""
    if not path.is_file():
        _write_private(path, secrets.token_hex(32))
    return path.read_text().strip().encode()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temp, path)
