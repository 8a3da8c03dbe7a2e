"""Attributing order, follow-up and survey rows to customers (SPEC D0).

A channel's rows name a customer by that channel's own id (the platform's 客户ID, the
POS 会员ID), by phone or by email. The customers table is either a `clean` output
(stable ``customer_id`` plus ``source_ids`` = ``channel:id;…``, ``phones``, ``emails``)
or a plain import (``customer_id``, ``phone``, ``email``). Matching is by stable id,
then source id (channel-qualified when the row has a channel, else an id that names one
customer only), then phone, then email — all as vectorised merges.
"""

from __future__ import annotations

import pandas as pd

MATCH_ORDER = ("id", "source", "phone", "email")


def _split(s: pd.Series) -> pd.Series:
    return s.fillna("").astype(str).str.split(";").explode().str.strip()


def customer_keys(customers: pd.DataFrame) -> pd.DataFrame:
    """One row per (kind, key) → customer_id; a key that names two customers is dropped."""
    cid = customers["customer_id"].astype(str)
    parts = [pd.DataFrame({"kind": "id", "key": cid, "customer_id": cid})]
    if "source_ids" in customers:
        src = _split(customers["source_ids"].set_axis(cid))
        src = src[src != ""]
        qualified = pd.DataFrame({"kind": "source", "key": src.to_numpy(), "customer_id": src.index})
        bare = qualified.assign(key=qualified["key"].str.split(":", n=1).str[-1])
        parts += [qualified, bare]
    for kind, single, multi in (("phone", "phone", "phones"), ("email", "email", "emails")):
        for col in (multi, single):
            if col in customers:
                vals = _split(customers[col].set_axis(cid))
                vals = vals[vals != ""]
                parts.append(pd.DataFrame({"kind": kind, "key": vals.to_numpy(), "customer_id": vals.index}))
    keys = pd.concat(parts, ignore_index=True).drop_duplicates()
    keys = keys[keys["key"] != ""]
    # an ambiguous key (two customers) cannot attribute anything
    n = keys.groupby(["kind", "key"])["customer_id"].transform("nunique")
    return keys[n == 1].reset_index(drop=True)


def attach_customer_ids(records: pd.DataFrame, customers: pd.DataFrame, channel_col: str = "channel") -> pd.DataFrame:
    """``records`` with ``customer_id`` (the customers' id, "" when unmatched) and
    ``match_key`` (id/source/phone/email/"") columns; the records' own id is kept as
    ``source_customer_id``."""
    keys = customer_keys(customers)
    out = records.copy()
    own = out["customer_id"].fillna("").astype(str).str.strip() if "customer_id" in out else pd.Series("", index=out.index)
    out["source_customer_id"] = own
    result = pd.Series("", index=out.index, dtype=object)
    how = pd.Series("", index=out.index, dtype=object)
    candidates = {
        "id": own,
        "phone": out["phone"].fillna("").astype(str) if "phone" in out else None,
        "email": out["email"].fillna("").astype(str) if "email" in out else None,
    }
    if channel_col in out:
        candidates["source_q"] = out[channel_col].fillna("").astype(str) + ":" + own
    for kind, key_kind in (("id", "id"), ("source_q", "source"), ("source", "source"), ("phone", "phone"), ("email", "email")):
        values = own if kind == "source" else candidates.get(kind)
        if values is None:
            continue
        todo = (result == "") & (values != "") & ~values.str.endswith(":")
        if not todo.any():
            continue
        table = keys[keys["kind"] == key_kind].set_index("key")["customer_id"]
        found = values[todo].map(table)
        hit = found.notna()
        result[found.index[hit]] = found[hit]
        how[found.index[hit]] = key_kind
    out["customer_id"] = result
    out["match_key"] = how
    return out
