"""Encrypting ID numbers at rest (SPEC H2): time of ``encrypt_series`` on N distinct IDs.

    $ .venv/bin/python bench/crypto_bench.py            # 1,000,000 IDs
    $ .venv/bin/python bench/crypto_bench.py 200000

Target (issue 14): 1M ID numbers encrypted in at most 1 s. Prints the time of encrypting,
of decrypting, and of an import-sized column with repeats (each ID on 5 rows).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pandas as pd

from custtool.crypto import decrypt_series, encrypt_series, new_key, parse_key


def ids(n: int, seed: int = 1) -> pd.Series:
    rng = np.random.default_rng(seed)
    body = rng.integers(10**16, 10**17, size=n).astype(str)
    return pd.Series(pd.array(body, dtype="str")).str.cat(pd.Series(["X"] * n, dtype="str"))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    key = parse_key(new_key())
    s = ids(n)
    print(f"load average: {os.getloadavg()[0]:.2f}, n = {n:,}")
    t = time.perf_counter()
    enc = encrypt_series(s, key)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    back = decrypt_series(enc, key)
    t_dec = time.perf_counter() - t
    assert (back == s).all()
    rep = ids(n // 5).repeat(5).reset_index(drop=True)
    t = time.perf_counter()
    encrypt_series(rep, key)
    t_rep = time.perf_counter() - t
    print(f"encrypt {n:,} distinct IDs: {t_enc:.3f} s (target <= 1 s)")
    print(f"decrypt {n:,} IDs:          {t_dec:.3f} s")
    print(f"encrypt {n:,} rows, {n // 5:,} distinct: {t_rep:.3f} s")


if __name__ == "__main__":
    main()
