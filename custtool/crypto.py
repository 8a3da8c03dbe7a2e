"""Sensitive columns at rest (SPEC H2): AES-GCM per value, key from ``CUSTTOOL_KEY``.

A sensitive value (身份证号, 银行卡号, and any column a fields file marks ``sensitive: true``)
is stored as the text ``enc1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`` in every file
custtool writes, so Parquet, CSV and xlsx outputs hold no clear copy and a file's other
columns stay readable without the key.

- Authenticated encryption: AES-256-GCM from the ``cryptography`` package; a changed byte
  fails the tag check (:class:`TamperedError`).
- Deterministic: the nonce is a keyed hash (BLAKE2b keyed with a key derived from
  ``CUSTTOOL_KEY``, a MAC like HMAC) of the value. The same value gives the same ciphertext
  under one key, so matching and dedupe compare ciphertexts — a keyed-hash comparison — and
  never need the plaintext. (What this reveals, that two cells are equal, is what a match
  key reveals anyway.) :func:`match_keys` gives the keyed hash itself.
- Only unique values are encrypted (an ID repeated on 40 orders is encrypted once).
- The key is never written, logged or put in a manifest: only its id (:attr:`Key.id`, the
  first 8 hex digits of a hash of the key) is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from custtool.errors import CusttoolError

KEY_ENV = "CUSTTOOL_KEY"
PREFIX = "enc1:"
#: columns that are always sensitive (rules/fields.yaml may name more per kind)
ALWAYS_SENSITIVE = ("id_number", "bank_card")
SENSITIVE_MODES = ("encrypt", "drop", "mask", "clear")
_NONCE = 12


class CryptoKeyError(CusttoolError):
    """No key, a key that is not a custtool key, or a value encrypted under another key."""


class TamperedError(CusttoolError):
    """A ciphertext failed its authentication tag: the file was changed after writing."""


@dataclass(frozen=True)
class Key:
    """The working keys derived from ``CUSTTOOL_KEY`` (never printed; ``repr`` hides them)."""

    enc: bytes
    mac: bytes
    id: str

    def __repr__(self) -> str:
        return f"Key(id={self.id!r})"


def new_key() -> str:
    """A fresh key: 32 random bytes, base64url (what ``custtool key new`` prints)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_key(text: str, *, source: str = KEY_ENV) -> Key:
    """The key of a ``custtool key new`` text; a wrong one is a clear error (never echoed)."""
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise CryptoKeyError(
            f"{source} is not a custtool key (expected 32 bytes in base64url)",
            "make one with `custtool key new` and keep it out of files and logs",
        )

    def derive(label: bytes) -> bytes:
        return hmac.digest(raw, b"custtool " + label, "sha256")

    return Key(derive(b"enc v1"), derive(b"mac v1"), derive(b"key id").hex()[:8])


def load_key(env: str = KEY_ENV, *, required: bool = False) -> Key | None:
    """The key in environment variable ``env`` (None when unset, unless ``required``)."""
    text = os.environ.get(env, "").strip()
    if not text:
        if required:
            raise CryptoKeyError(
                f"no key: the environment variable {env} is not set",
                f"export {env}=<key> (make one with `custtool key new`)",
            )
        return None
    return parse_key(text, source=env)


def _text(s: pd.Series) -> pd.Series:
    return s.astype("string").fillna("")


def is_encrypted(s: pd.Series) -> pd.Series:
    """True where a cell holds a custtool ciphertext."""
    return _text(s).str.startswith(PREFIX).fillna(False).astype(bool)


def _nonces(values: list[str], key: Key) -> list[bytes]:
    base = hashlib.blake2b(key=key.mac, digest_size=_NONCE)
    out = []
    for v in values:  # one keyed hash per distinct value (hashlib has no batch call)
        h = base.copy()
        h.update(v.encode("utf-8"))
        out.append(h.digest())
    return out


def match_keys(s: pd.Series, key: Key) -> pd.Series:
    """The keyed hash (hex) of each clear value: equal values, equal keys; blank stays blank."""
    t = _text(s)
    codes, uniques = pd.factorize(t)
    hexes = np.array([n.hex() for n in _nonces(list(uniques), key)] or [""], dtype=object)
    out = pd.Series(hexes[codes], index=s.index, dtype="str")
    return out.where(t != "", "")


def encrypt_series(s: pd.Series, key: Key) -> pd.Series:
    """Each non-blank clear value as ``enc1:<key id>:<token>``; blanks and cells already
    encrypted are kept as they are."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    t = _text(s)
    todo = (t != "") & ~t.str.startswith(PREFIX)
    if not todo.any():
        return t.astype("str")
    codes, uniques = pd.factorize(t[todo])
    values = uniques.tolist()
    aead = AESGCM(key.enc)
    aad = key.id.encode("ascii")
    tokens = [
        n + aead.encrypt(n, v.encode("utf-8"), aad)
        for n, v in zip(_nonces(values, key), values, strict=True)
    ]
    texts = _token_texts(tokens, f"{PREFIX}{key.id}:")
    out = t.astype(object).to_numpy(copy=True)
    out[todo.to_numpy()] = texts[codes]
    return pd.Series(out, index=s.index, dtype="str")


_B64 = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8
)


def _b64_rows(m: np.ndarray) -> np.ndarray:
    """base64url of each row of a uint8 matrix (all rows one length), as a uint8 matrix."""
    n, width = m.shape
    pad = -width % 3
    if pad:
        m = np.concatenate([m, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    g = m.reshape(n, -1, 3).astype(np.uint32)
    bits = (g[:, :, 0] << 16) | (g[:, :, 1] << 8) | g[:, :, 2]
    idx = np.stack([(bits >> s) & 63 for s in (18, 12, 6, 0)], axis=2).reshape(n, -1)
    out = _B64[idx]
    if pad:
        out[:, -pad:] = ord("=")
    return out


def _token_texts(tokens: list[bytes], head: str) -> np.ndarray:
    """``head + base64url(token)`` for every token, built as whole matrices per token length
    (no per-value encoding call)."""
    import pyarrow as pa

    lengths = np.fromiter((len(x) for x in tokens), dtype=np.int64, count=len(tokens))
    out = np.empty(len(tokens), dtype=object)
    prefix = np.frombuffer(head.encode("ascii"), dtype=np.uint8)
    for width in np.unique(lengths):
        at = np.flatnonzero(lengths == width)
        rows = np.frombuffer(b"".join([tokens[i] for i in at]), dtype=np.uint8)
        text = _b64_rows(rows.reshape(len(at), int(width)))
        text = np.concatenate([np.broadcast_to(prefix, (len(at), len(prefix))), text], axis=1)
        w = text.shape[1]
        offsets = np.arange(0, (len(at) + 1) * w, w, dtype=np.int32)
        arr = pa.StringArray.from_buffers(
            len(at), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(text))
        )
        out[at] = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)
    return out


def decrypt_series(s: pd.Series, key: Key, *, where: str = "") -> pd.Series:
    """The clear values of a column (cells that are not ciphertext are kept).

    A value encrypted under another key, or whose tag fails (the file was changed), is a
    :class:`CusttoolError` naming ``where`` and the row, never the value.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    t = _text(s)
    enc = t.str.startswith(PREFIX).fillna(False).to_numpy(dtype=bool)
    if not enc.any():
        return t.astype("str")
    codes, uniques = pd.factorize(t[enc])
    aead = AESGCM(key.enc)
    clear: list[str] = []
    place = where or "a column"

    def row(i: int) -> int:  # the first row holding unique value i (for error messages)
        return int(np.flatnonzero(enc)[np.flatnonzero(codes == i)[0]]) + 1

    for i, cell in enumerate(uniques.tolist()):
        _, kid, token = cell.split(":", 2) if cell.count(":") >= 2 else ("", "", "")
        if kid != key.id:
            raise CryptoKeyError(
                f"{place}, row {row(i)}: encrypted with key id {kid or '?'}, "
                f"but the key given has id {key.id}",
                f"set {KEY_ENV} to the key the file was written with",
            )
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
            clear.append(aead.decrypt(raw[:_NONCE], raw[_NONCE:], kid.encode("ascii")).decode())
        except (InvalidTag, ValueError, UnicodeError):
            raise TamperedError(
                f"{place}, row {row(i)}: ciphertext does not authenticate (changed or damaged)",
                "restore the file from the run folder or a backup; it was altered after writing",
            ) from None
    out = t.astype(object).to_numpy(copy=True)
    out[enc] = np.array(clear, dtype=object)[codes]
    return pd.Series(out, index=s.index, dtype="str")


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


def reveal_frame(df: pd.DataFrame, key: Key, *, where: str = "") -> pd.DataFrame:
    """Every encrypted column of ``df`` decrypted (for the admin's ``custtool reveal``)."""
    out = df.copy()
    for c in out.columns:
        s = out[c]
        if (s.dtype == object or pd.api.types.is_string_dtype(s)) and is_encrypted(s).any():
            out[c] = decrypt_series(s, key, where=f"{where}, column {c}" if where else str(c))
    return out


__all__ = [
    "KEY_ENV",
    "CryptoKeyError",
    "Key",
    "Protection",
    "TamperedError",
    "decrypt_series",
    "encrypt_series",
    "is_encrypted",
    "load_key",
    "match_keys",
    "new_key",
    "parse_key",
    "protect_sensitive",
    "reveal_frame",
    "sensitive_columns",
]


def rotate_frame(
    df: pd.DataFrame, old: Key, new: Key, *, where: str = ""
) -> tuple[pd.DataFrame, int]:
    """Every ciphertext of ``df`` re-encrypted from ``old`` to ``new``; (frame, cells changed)."""
    out = df.copy()
    changed = 0
    for c in out.columns:
        s = out[c]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s)):
            continue
        enc = is_encrypted(s)
        if not enc.any():
            continue
        clear = decrypt_series(s, old, where=f"{where}, column {c}" if where else str(c))
        out[c] = _text(s).mask(enc, encrypt_series(clear.where(enc, ""), new)).astype("str")
        changed += int(enc.sum())
    return out, changed
