"""The site key and what is drawn from it: keyed pseudonyms and per-patient date offsets.

HMAC-SHA256 with a secret key: without the key a pseudonym cannot be recomputed from a
guessed MRN (a plain hash could, by trying every MRN); the same key gives the same
pseudonyms on every run, so documents of one patient stay linked across releases.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

MIN_KEY_BYTES = 32  # 256 bits: the HMAC-SHA256 block's security level


class SiteKey:
    """A secret read from a file; never printed, logged or written to the research copy."""

    def __init__(self, secret: bytes, pseudonym_chars: int = 32) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise ValueError(f"the de-identification key must hold at least {MIN_KEY_BYTES} bytes, got {len(secret)}")
        self._secret = secret
        self.pseudonym_chars = pseudonym_chars

    @classmethod
    def from_file(cls, path: Path, pseudonym_chars: int = 32) -> "SiteKey":
        """The key file's bytes, surrounding whitespace dropped (a key written with `echo` ends in a newline)."""
        if not path.is_file():
            raise FileNotFoundError(f"de-identification key file {path} not found; make one with "
                                    f"`head -c 48 /dev/urandom | base64 > {path}` and keep it out of the research copy")
        return cls(path.read_bytes().strip(), pseudonym_chars)

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{kind}\x1f{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, kind: str, value: str) -> str:
        """Hex pseudonym of `value` in the namespace `kind` (patient, document, Condition ...).

        The kind is part of the message, so a document and a patient with the same id get
        unrelated pseudonyms.
        """
        return self._digest(kind, value).hex()[: self.pseudonym_chars]

    def date_offset_days(self, patient: str, max_days: int) -> int:
        """The patient's date shift in [-max_days, max_days], never 0 (0 would leave dates as they were)."""
        number = int.from_bytes(self._digest("date-offset", patient)[:8], "big")
        drawn = number % (2 * max_days)  # 0 .. 2*max_days - 1
        return drawn - max_days if drawn < max_days else drawn - max_days + 1

    def fingerprint(self) -> str:
        """A short public fingerprint of the key (HMAC of a constant), to tell releases made with one key."""
        return self.pseudonym("key-fingerprint", "medrec")[:12]
