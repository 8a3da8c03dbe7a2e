"""What happens to sensitive columns before anything is written (SPEC H2, issue 14).

Encrypted with ``CUSTTOOL_KEY`` (:mod:`custtool.crypto`), or — without a key, only by the
user's explicit choice — dropped, masked (:mod:`custtool.report.masking`, the one masking
policy) or kept in clear; with neither a key nor a choice the step stops before writing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from custtool.crypto import KEY_ENV, CryptoKeyError, Key, encrypt_series
from custtool.errors import CusttoolError
from custtool.fields import ALWAYS_SENSITIVE

SENSITIVE_MODES = ("encrypt", "drop", "mask", "clear")


def sensitive_columns(df: pd.DataFrame, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The sensitive columns present in ``df`` (always-sensitive ones, then ``extra``)."""
    wanted = list(dict.fromkeys([*ALWAYS_SENSITIVE, *extra]))
    return [c for c in wanted if c in df.columns]


@dataclass
class Protection:
    """What was done to the sensitive columns of a table (recorded in manifests)."""

    columns: list[str]
    mode: str  # encrypt | drop | mask | clear | none
    key_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sensitive_columns": self.columns, "sensitive": self.mode, "key_id": self.key_id}


def protect_sensitive(
    df: pd.DataFrame,
    *,
    mode: str | None = None,
    key: Key | None = None,
    extra: tuple[str, ...] | list[str] = (),
    where: str = "the input",
) -> tuple[pd.DataFrame, Protection]:
    """Sensitive columns made safe to write, decided before anything is written.

    ``mode``: None = encrypt when a key is given, else refuse; ``encrypt`` (needs the key),
    ``drop`` (columns removed), ``mask`` (masked like every report), ``clear`` (kept in clear,
    only when the user asks; the manifest says so).
    """
    cols = sensitive_columns(df, extra)
    if mode is not None and mode not in SENSITIVE_MODES:
        raise CusttoolError(
            f"unknown --sensitive {mode!r}", f"use one of: {', '.join(SENSITIVE_MODES)}"
        )
    if not cols:
        return df, Protection([], "none", key.id if key else None)
    if mode is None:
        mode = "encrypt" if key is not None else None
    if mode is None or (mode == "encrypt" and key is None):
        raise CryptoKeyError(
            f"{where} has sensitive columns ({', '.join(cols)}) and no key is set; "
            "nothing was written",
            f"set {KEY_ENV} (make one with `custtool key new`) to encrypt them, or choose "
            "--sensitive drop|mask|clear (clear keeps them readable to anyone with the files)",
        )
    out = df.copy()
    if mode == "encrypt":
        assert key is not None
        for c in cols:
            out[c] = encrypt_series(out[c], key)
    elif mode == "drop":
        out = out.drop(columns=cols)
    elif mode == "mask":
        from custtool.report.masking import mask_bank_cards, mask_id_numbers

        for c in cols:
            out[c] = (mask_bank_cards if c == "bank_card" else mask_id_numbers)(out[c])
    return out, Protection(cols, mode, key.id if key and mode == "encrypt" else None)


__all__ = ["SENSITIVE_MODES", "Protection", "protect_sensitive", "sensitive_columns"]
