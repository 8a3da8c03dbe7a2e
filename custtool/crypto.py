"""Sensitive columns at rest (SPEC H2): AES-SIV per value, key from ``CUSTTOOL_KEY``.

A sensitive value (身份证号, 银行卡号, and any column a fields file marks ``sensitive: true``)
is stored as the text ``enc1:<key id>:<base64(tag ‖ ciphertext)>`` in every file custtool
writes, so Parquet, CSV and xlsx outputs hold no clear copy and a file's other columns stay
readable without the key.

- Authenticated encryption: AES-256-SIV (RFC 5297), the deterministic AEAD of the
  ``cryptography`` package (``AESSIV``). The same bytes are computed here for a whole column
  at once from AES block calls of that package (ECB over all the rows' blocks: the S2V/CMAC
  chain and the CTR key stream); the tests check every length against ``AESSIV`` itself. A
  changed byte fails the tag check (:class:`TamperedError`).
- Deterministic: the same value gives the same ciphertext under one key, so matching and
  dedupe compare ciphertexts — the SIV tag is a keyed hash (CMAC-based S2V) of the value —
  and never need the plaintext. What this reveals, that two cells are equal, is what a
  keyed match key reveals anyway. :func:`match_keys` gives the keyed hash itself.
- Only distinct values are encrypted (an ID repeated on 40 orders is encrypted once).
- The key is never written, logged or put in a manifest: only its id (:attr:`Key.id`, the
  first 8 hex digits of a keyed hash of the key) is.
"""

from __future__ import annotations

import base64
import binascii
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


class CryptoKeyError(CusttoolError):
    """No key, a key that is not a custtool key, or a value encrypted under another key."""


class TamperedError(CusttoolError):
    """A ciphertext failed its authentication tag: the file was changed after writing."""


@dataclass(frozen=True)
class Key:
    """The working key derived from ``CUSTTOOL_KEY`` (never printed; ``repr`` hides it)."""

    siv: bytes  # 64 bytes: AES-256-SIV (S2V key ‖ CTR key)
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

    return Key(derive(b"siv mac v1") + derive(b"siv ctr v1"), derive(b"key id").hex()[:8])


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


# --------------------------------------------------------------------------- AES-SIV in batch
def _ecb(key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(key), modes.ECB()).encryptor()


def _aes_rows(enc: Any, m: np.ndarray) -> np.ndarray:
    """AES of every 16-byte row of an (n, 16) uint8 matrix, in one call."""
    out = enc.update(np.ascontiguousarray(m).tobytes())
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, 16)


def _dbl(b: bytes) -> bytes:
    """Doubling in GF(2^128) (RFC 5297 ``dbl``)."""
    v = int.from_bytes(b, "big") << 1
    if v >> 128:
        v = (v & ((1 << 128) - 1)) ^ 0x87
    return v.to_bytes(16, "big")


class _SIV:
    """AES-SIV (RFC 5297) without associated data on a matrix of equal-length values:
    byte for byte what ``cryptography``'s ``AESSIV(key).encrypt(value, None)`` gives."""

    def __init__(self, key: bytes) -> None:
        self.mac_key, self.ctr_key = key[:32], key[32:]
        e = _ecb(self.mac_key)
        self.k1 = _dbl(e.update(bytes(16)))  # CMAC subkeys
        self.k2 = _dbl(self.k1)
        self.d = e.update(self.k1)  # CMAC(<zero block>) = E(0 xor K1)

    def _cmac(self, m: np.ndarray, length: int) -> np.ndarray:
        n = m.shape[0]
        blocks = max(1, -(-length // 16))
        full = length > 0 and length % 16 == 0
        w = np.zeros((n, blocks * 16), dtype=np.uint8)
        w[:, :length] = m
        if not full:
            w[:, length] = 0x80
        w[:, -16:] ^= np.frombuffer(self.k1 if full else self.k2, dtype=np.uint8)
        e = _ecb(self.mac_key)
        state = np.zeros((n, 16), dtype=np.uint8)
        for j in range(blocks):  # the CBC chain: one AES call per block position, all rows
            state = _aes_rows(e, state ^ w[:, j * 16 : (j + 1) * 16])
        return state

    def _s2v(self, p: np.ndarray, length: int) -> np.ndarray:
        if length >= 16:
            t = p.copy()
            t[:, -16:] ^= np.frombuffer(self.d, dtype=np.uint8)
            return self._cmac(t, length)
        t = np.zeros((p.shape[0], 16), dtype=np.uint8)
        t[:, :length] = p
        t[:, length] = 0x80
        t ^= np.frombuffer(_dbl(self.d), dtype=np.uint8)
        return self._cmac(t, 16)

    def _ctr(self, v: np.ndarray, x: np.ndarray, length: int) -> np.ndarray:
        n = v.shape[0]
        q = v.copy()
        q[:, 8] &= 0x7F
        q[:, 12] &= 0x7F
        blocks = -(-length // 16)
        low = q[:, 12:16].copy().view(">u4").reshape(n)
        counters = np.repeat(q[:, None, :], blocks, axis=1)
        ctr = (low[:, None] + np.arange(blocks, dtype=np.uint32)[None, :]).astype(">u4")
        counters[:, :, 12:16] = ctr.view(np.uint8).reshape(n, blocks, 4)
        stream = _aes_rows(_ecb(self.ctr_key), counters.reshape(-1, 16))
        return x ^ stream.reshape(n, blocks * 16)[:, :length]

    def encrypt(self, p: np.ndarray) -> np.ndarray:
        """(n, L) clear bytes → (n, 16 + L): the SIV tag, then the ciphertext."""
        v = self._s2v(p, p.shape[1])
        return np.concatenate([v, self._ctr(v, p, p.shape[1])], axis=1)

    def decrypt(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 16 + L) → the clear bytes and whether each row's tag is right."""
        length = c.shape[1] - 16
        v = c[:, :16]
        p = self._ctr(v, c[:, 16:], length)
        return p, (self._s2v(p, length) == v).all(axis=1)


# --------------------------------------------------------------------------- bytes ↔ text
def _b64_rows(m: np.ndarray) -> np.ndarray:
    """base64 (with ``=`` padding) of each row of a uint8 matrix, as a uint8 matrix: the
    rows zero-padded to whole 3-byte groups and encoded in one call, then the characters of
    the padding made ``=`` (exactly the standard encoding of each row)."""
    n, width = m.shape
    pad = -width % 3
    if pad:
        m = np.concatenate([m, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    text = binascii.b2a_base64(np.ascontiguousarray(m).tobytes(), newline=False)
    out = np.frombuffer(text, dtype=np.uint8).reshape(n, -1).copy()
    if pad:
        out[:, -pad:] = ord("=")
    return out


def _unb64_rows(m: np.ndarray) -> np.ndarray | None:
    """The bytes of each row of base64 text (one length, ``=`` padded); None if invalid."""
    n, width = m.shape
    if width % 4 or n == 0:
        return None
    pad = int((m[0, -2:] == ord("=")).sum())
    body = m.copy()
    if pad:
        if not (m[:, width - pad :] == ord("=")).all():
            return None
        body[:, width - pad :] = ord("A")
    if (body == ord("=")).any():
        return None
    try:
        raw = binascii.a2b_base64(body.tobytes(), strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    out = np.frombuffer(raw, dtype=np.uint8).reshape(n, -1)
    return out[:, : out.shape[1] - pad]


def _arrow_text(s: pd.Series) -> Any:
    """The column as one pyarrow large_string array ("" for missing)."""
    import pyarrow as pa

    arr = pa.array(_text(s).array, type=pa.large_string())
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _groups(arr: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """The UTF-8 bytes of a large_string array grouped by length: [(positions, (k, L))]."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    widths = np.unique(lengths)
    if len(widths) == 1:  # one length (ID numbers): the bytes are already a matrix
        w = int(widths[0])
        m = data[offsets[0] : offsets[-1]].reshape(len(arr), w)
        return [(np.arange(len(arr)), m)]
    out = []
    for width in widths:
        at = np.flatnonzero(lengths == width)
        idx = offsets[at][:, None] + np.arange(int(width))[None, :]
        out.append((at, data[idx]))
    return out


def _assemble(n: int, parts: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    """A large_string array of ``n`` values from (positions, (k, L) UTF-8 matrix) parts:
    each part a fixed-width array, then one ``take`` puts the values in place."""
    import pyarrow as pa

    arrays = []
    for _, m in parts:
        k, w = m.shape
        offsets = np.arange(0, (k + 1) * w, w, dtype=np.int64) if w else np.zeros(k + 1, np.int64)
        arrays.append(
            pa.LargeStringArray.from_buffers(
                k, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(m))
            )
        )
    whole = pa.concat_arrays(arrays) if arrays else pa.array([], type=pa.large_string())
    order = np.concatenate([at for at, _ in parts]) if parts else np.zeros(0, np.int64)
    if len(order) == n and (order == np.arange(n)).all():
        return whole
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(len(order))
    return whole.take(pa.array(where))


def _to_series(arr: Any, index: pd.Index) -> pd.Series:
    return pd.Series(pd.array(arr, dtype="str"), index=index)


def _encrypt_arrow(arr: Any, key: Key) -> tuple[Any, np.ndarray]:
    """Cell texts and SIV tags (n, 16) of the clear values of a large_string array."""
    siv = _SIV(key.siv)
    prefix = np.frombuffer(f"{PREFIX}{key.id}:".encode("ascii"), dtype=np.uint8)
    tags = np.zeros((len(arr), 16), dtype=np.uint8)
    parts = []
    for at, clear in _groups(arr):
        token = siv.encrypt(clear)
        tags[at] = token[:, :16]
        head = np.broadcast_to(prefix, (len(at), len(prefix)))
        parts.append((at, np.concatenate([head, _b64_rows(token)], axis=1)))
    return _assemble(len(arr), parts), tags


def match_keys(s: pd.Series, key: Key) -> pd.Series:
    """The keyed hash (hex SIV tag) of each clear value: equal values, equal keys; blank
    stays blank."""
    t = _text(s)
    _, tags = _encrypt_arrow(_arrow_text(t), key)
    hexes = np.array([bytes(r).hex() for r in tags], dtype=object)
    return pd.Series(hexes, index=s.index, dtype="str").where(t != "", "")


def encrypt_series(s: pd.Series, key: Key) -> pd.Series:
    """Each non-blank clear value as ``enc1:<key id>:<token>``; blanks and cells already
    encrypted are kept as they are. The whole column in a few batched AES calls (the
    encryption is deterministic, so repeated values need no de-duplication)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = _text(s)
    todo = ((t != "") & ~t.str.startswith(PREFIX)).to_numpy(dtype=bool)
    if not todo.any():
        return t.astype("str")
    arr = _arrow_text(t)
    texts, _ = _encrypt_arrow(arr.filter(pa.array(todo)), key)
    return _to_series(pc.replace_with_mask(arr, pa.array(todo), texts), s.index)


def decrypt_series(s: pd.Series, key: Key, *, where: str = "") -> pd.Series:
    """The clear values of a column (cells that are not ciphertext are kept).

    A value encrypted under another key, or whose tag fails (the file was changed), is a
    :class:`CusttoolError` naming ``where`` and the row, never the value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    t = _text(s)
    enc = t.str.startswith(PREFIX).fillna(False).to_numpy(dtype=bool)
    if not enc.any():
        return t.astype("str")
    rows = np.flatnonzero(enc)
    place = where or "a column"
    head = f"{PREFIX}{key.id}:"
    cells = t[enc]
    own = cells.str.startswith(head).to_numpy(dtype=bool)
    if not own.all():
        i = int(np.flatnonzero(~own)[0])
        parts = str(cells.iloc[i]).split(":")
        kid = parts[1] if len(parts) > 2 else "?"
        raise CryptoKeyError(
            f"{place}, row {rows[i] + 1}: encrypted with key id {kid}, "
            f"but the key given has id {key.id}",
            f"set {KEY_ENV} to the key the file was written with",
        )
    siv = _SIV(key.siv)
    out_parts = []
    for at_len, text_len in _groups(_arrow_text(cells.str.slice(len(head)))):
        # one text length may hold two byte lengths (34 and 35 bytes are both 48 characters):
        # split by the number of ``=``
        pads = (text_len[:, -2:] == ord("=")).sum(axis=1) if text_len.shape[1] >= 2 else None
        for pad in [0] if pads is None else np.unique(pads):
            sel = slice(None) if pads is None else pads == pad
            at, text = at_len[sel], text_len[sel]
            token = _unb64_rows(text)
            ok = None
            if token is not None and token.shape[1] >= 16:
                p, ok = siv.decrypt(token)
            if ok is None or not ok.all():
                bad = int(at[0] if ok is None else at[np.flatnonzero(~ok)[0]])
                raise TamperedError(
                    f"{place}, row {rows[bad] + 1}: ciphertext does not authenticate "
                    "(changed or damaged)",
                    "restore the file from the run folder or a backup; "
                    "it was altered after writing",
                )
            out_parts.append((at, p))
    clear = _assemble(len(cells), out_parts)
    try:
        clear.validate(full=True)
    except pa.ArrowInvalid:  # authenticated bytes are the UTF-8 written: cannot happen
        raise TamperedError(f"{place}: ciphertext is not text") from None
    arr = _arrow_text(t)
    return _to_series(pc.replace_with_mask(arr, pa.array(enc), clear), s.index)


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
    "TamperedError",
    "decrypt_series",
    "encrypt_series",
    "is_encrypted",
    "load_key",
    "match_keys",
    "new_key",
    "parse_key",
    "reveal_frame",
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
