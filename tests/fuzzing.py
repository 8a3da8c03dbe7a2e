"""Mutations of the example exports for the fuzz test and bench/fuzz.py (issue 13)."""

from __future__ import annotations

import random
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOURCES = [
    EXAMPLES / "公众号线索.csv",
    EXAMPLES / "门店会员.csv",
    EXAMPLES / "订单明细.csv",
    EXAMPLES / "满意度调查.csv",
    EXAMPLES / "电商平台会员.xlsx",
]


def _flip(d: bytes, r: random.Random) -> bytes:
    b = bytearray(d)
    for _ in range(r.randint(1, 20)):
        b[r.randrange(len(b))] = r.randrange(256)
    return bytes(b)


def _truncate(d: bytes, r: random.Random) -> bytes:
    return d[: r.randrange(1, len(d))]


def _quote(d: bytes, r: random.Random) -> bytes:
    at = r.randrange(len(d))
    return d[:at] + b'"' + d[at:]


def _nul(d: bytes, r: random.Random) -> bytes:
    at = r.randrange(len(d))
    return d[:at] + b"\x00" * r.randint(1, 50) + d[at:]


def _mixed(d: bytes, r: random.Random) -> bytes:
    try:
        text = d.decode("utf-8-sig")
        other = "gbk"
    except UnicodeDecodeError:
        text, other = d.decode("gb18030"), "utf-8"
    lines = text.split("\n")
    i = r.randrange(len(lines))
    enc = [("utf-8" if other == "gbk" else "gb18030")] * len(lines)
    enc[i] = other
    return b"\n".join(ln.encode(e, errors="replace") for ln, e in zip(lines, enc, strict=True))


def _huge(d: bytes, r: random.Random) -> bytes:
    at = d.find(b"\n", r.randrange(len(d)))
    return d[:at] + b"," + b"x" * r.choice([200_000, 1_200_000]) + d[at:]


def _many_columns(d: bytes, r: random.Random) -> bytes:
    at = d.find(b"\n", r.randrange(len(d)))
    return d[:at] + b"," * r.choice([500, 20_000]) + d[at:]


def _no_newline(d: bytes, r: random.Random) -> bytes:
    return b"a," * r.choice([1000, 500_000])


MUTATIONS = {
    "flip": _flip,
    "truncate": _truncate,
    "quote": _quote,
    "nul": _nul,
    "mixed": _mixed,
    "huge": _huge,
    "many_columns": _many_columns,
    "no_newline": _no_newline,
}


def mutate(data: bytes, r: random.Random) -> tuple[bytes, str]:
    """One random mutation of ``data``; returns (bytes, its name). xlsx files get the
    byte-level ones (flip, truncate, nul) and the zip broken or not."""
    is_zip = data[:2] == b"PK"
    names = ["flip", "truncate", "nul"] if is_zip else list(MUTATIONS)
    name = r.choice(names)
    out = MUTATIONS[name](data, r)
    return out, name


__all__ = ["EXAMPLES", "MUTATIONS", "SOURCES", "mutate"]
