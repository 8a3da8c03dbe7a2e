"""Follow-up reminders and status transitions (SPEC F1, F2).

``due_followups`` lists, per owner, the follow-ups that are overdue or due soon at the
as-of date: those the follow-up log scheduled (下次跟进时间) and those the rules in
``rules/followups.yaml`` require (e.g. 流失风险 customers not contacted for 30 days,
高价值 customers without a visit in a quarter). ``apply_transitions`` sets each
customer's status from its latest follow-up result by the YAML mapping, keeping the
reason and the date.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from custtool.attribution import attribute, is_attributed
from custtool.errors import InputError

TASK_COLUMNS = [
    "owner",
    "customer_id",
    "name",
    "due_date",
    "state",
    "days_overdue",
    "source",
    "rule",
    "action",
    "last_contact",
    "last_method",
    "tier",
    "rfm_class",
]
STATE_OVERDUE, STATE_DUE = "逾期", "即将到期"
TASK_SHEET = "跟进任务"


@dataclass(frozen=True)
class FollowupRule:
    name: str
    match: dict[str, Any]
    every_days: int
    methods: tuple[str, ...] = ()
    action: str = ""


@dataclass(frozen=True)
class FollowupConfig:
    due_soon_days: int
    rules: tuple[FollowupRule, ...]
    transitions: dict[str, str]


def load_followup_rules(path: str | os.PathLike[str] | None = None) -> FollowupConfig:
    """Follow-up rules: the shipped ``rules/followups.yaml`` overlaid key by key with ``path``
    (a user's ``rules:`` list replaces the shipped one), checked by the one loader."""
    from custtool.config import FollowupSettings, load_model

    s = load_model(
        FollowupSettings,
        path,
        default="followups.yaml",
        what="rules file",
        hint="check the path given to --rules",
    )
    rules = tuple(
        FollowupRule(r.name, dict(r.match), r.every_days, tuple(r.methods or ()), r.action or "")
        for r in s.rules or ()
    )
    return FollowupConfig(s.due_soon_days, rules, dict(s.transitions or {}))


def _matches(customers: pd.DataFrame, match: dict[str, Any]) -> pd.Series:
    ok = pd.Series(True, index=customers.index)
    for col, want in match.items():
        wanted = [str(w) for w in (want if isinstance(want, list) else [want])]
        if col not in customers:
            return pd.Series(False, index=customers.index)
        s = customers[col]
        if col == "tags" or col.startswith("tag_"):
            listed = _list_hits(s, wanted)
            if listed is not None:
                ok &= listed
                continue
            is_list = (
                s.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any() if len(s) else False
            )
            items = (
                s.explode() if is_list else s.fillna("").astype(str).str.split(r"[;、,]").explode()
            )
            hit = (
                items.isin(wanted).groupby(level=0).any().reindex(customers.index, fill_value=False)
            )
            ok &= hit.astype(bool)
        else:
            ok &= s.astype(str).isin(wanted)
    return ok


def _list_hits(s: pd.Series, wanted: list[str]) -> np.ndarray | None:
    """Rows whose list of text (the run's tags) holds one of ``wanted``, found in Arrow (one
    flat array of every item, no Python explode of a million lists); None when the column is
    not lists of text only (then :func:`_matches` explodes it as before)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if s.dtype != object or not len(s):
        return None
    listlike = s.map(type).isin([list, tuple, np.ndarray]).to_numpy()
    if not listlike.any() or not (listlike | s.isna().to_numpy()).all():
        return None
    try:
        arr = pa.array(s.to_numpy(), type=pa.list_(pa.string()), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not text inside
        return None
    found = pc.fill_null(pc.is_in(pc.list_flatten(arr), value_set=pa.array(wanted)), False)
    hit = np.zeros(len(s), dtype=bool)
    hit[pc.filter(pc.list_parent_indices(arr), found).to_numpy()] = True
    return hit


def _check_log(log: pd.DataFrame) -> None:
    """InputError unless ``log`` looks like a follow-up log (it needs the record time)."""
    if "time" not in log.columns:
        raise InputError(
            "the follow-up log has no 'time' column (跟进时间)",
            "pass the imported follow-up log (e.g. imported_interactions.parquet or 跟进记录.xlsx), not orders or customers",
        )


def link_log(customers: pd.DataFrame, log: pd.DataFrame, index: Any = None) -> pd.DataFrame:
    """The log rows attributed to a customer by the one matcher (custtool.attribution); a
    log linked already (it carries ``source_customer_id`` and ``match_key``, as this returns
    it) is returned as it is. The run links its log once for :func:`apply_transitions` and
    :func:`due_followups` (the status changes do not change who a record belongs to);
    ``index``: the segment's CustomerIndex of these customers (``attribute(index=)``)."""
    if is_attributed(log):
        return log
    return attribute(log, customers, kind="interactions", index=index).matched


def due_followups(
    customers: pd.DataFrame,
    log: pd.DataFrame,
    config: FollowupConfig | None = None,
    *,
    as_of: str | pd.Timestamp | None = None,
    owner: str | None = None,
) -> pd.DataFrame:
    """Overdue and due-soon follow-ups, one row per (customer, reason), per owner.

    ``as_of`` defaults to the segment's as-of date (the ``as_of`` column of a segmented
    table: the latest order day), by the one as-of rule
    (:func:`custtool.dates.resolve_as_of`) — never today's date; without either it is an
    InputError. Owner is the customer's ``owner``, else the staff of its latest follow-up.
    """
    from custtool.dates import resolve_as_of

    _check_log(log)
    config = config or load_followup_rules()
    as_of_ts = resolve_as_of(as_of, customers["as_of"] if "as_of" in customers.columns else None)
    log = link_log(customers, log)
    log = log[log["time"] <= as_of_ts + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)]
    horizon = as_of_ts + pd.Timedelta(days=config.due_soon_days)
    latest = log.sort_values("time").groupby("customer_id").tail(1).set_index("customer_id")
    # the customers by id: the table's columns shared, not copied (copy-on-write)
    base = customers.set_index(customers["customer_id"].astype(str), drop=False)
    tasks: list[pd.DataFrame] = []
    # 1. scheduled in the log: the latest record's next follow-up date
    if "next_follow_up" in latest:
        sched = latest[latest["next_follow_up"].notna() & (latest["next_follow_up"] <= horizon)]
        if len(sched):
            tasks.append(
                pd.DataFrame(
                    {
                        "customer_id": sched.index,
                        "due_date": sched["next_follow_up"].dt.normalize().to_numpy(),
                        "source": "跟进记录",
                        "rule": "下次跟进时间",
                        "action": sched.get("result", pd.Series("", index=sched.index))
                        .astype(str)
                        .radd("上次结果:")
                        .to_numpy(),
                    }
                )
            )
    # 2. rules: every N days, by the given methods
    for rule in config.rules:
        # the matching customers' ids only (memory: no copy of their rows, ~80 columns)
        who = base.index[_matches(base, rule.match).to_numpy()]
        if not len(who):
            continue
        qualifying = (
            log
            if not rule.methods
            else log[log.get("method", pd.Series("", index=log.index)).isin(rule.methods)]
        )
        last = qualifying.groupby("customer_id")["time"].max()
        last_contact = last.reindex(who)  # NaT where never contacted (also when nobody qualifies)
        due = (last_contact.dt.normalize() + pd.Timedelta(days=rule.every_days)).fillna(as_of_ts)
        due = due.where(due <= horizon)
        hit = due.notna()
        if hit.any():
            tasks.append(
                pd.DataFrame(
                    {
                        "customer_id": who[hit.to_numpy()],
                        "due_date": due[hit].to_numpy(),
                        "source": "规则",
                        "rule": rule.name,
                        "action": rule.action,
                    }
                )
            )
    if not tasks:
        return pd.DataFrame(columns=TASK_COLUMNS)
    out = pd.concat(tasks, ignore_index=True)
    out["due_date"] = pd.to_datetime(out["due_date"])
    out["days_overdue"] = (as_of_ts - out["due_date"]).dt.days.clip(lower=0).astype(int)
    out["state"] = np.where(out["due_date"] < as_of_ts, STATE_OVERDUE, STATE_DUE)
    out["last_contact"] = out["customer_id"].map(latest["time"]) if len(latest) else pd.NaT
    out["last_method"] = (
        out["customer_id"].map(latest["method"]).fillna("") if "method" in latest else ""
    )
    for col in ("name", "tier", "rfm_class"):
        out[col] = out["customer_id"].map(base[col]).fillna("") if col in base else ""
    blank = pd.Series("", index=out.index, dtype=object)
    cust_owner = (
        out["customer_id"].map(base["owner"]).astype(object).fillna("")
        if "owner" in base
        else blank
    )
    staff = (
        out["customer_id"].map(latest["staff"]).astype(object).fillna("")
        if "staff" in latest
        else blank
    )
    owner_of = cust_owner.where(cust_owner != "", staff)
    out["owner"] = owner_of.where(owner_of != "", "(未分配)")
    if owner is not None:
        out = out[out["owner"] == owner]
    out = out.sort_values(
        ["owner", "due_date", "customer_id", "rule"], kind="mergesort"
    ).reset_index(drop=True)
    return out[TASK_COLUMNS]


def task_table(tasks: pd.DataFrame, lang: str = "zh") -> pd.DataFrame:
    """The tasks with display headers (负责人, 客户编号, 到期日, …) for a workbook people read."""
    from custtool.labels import FOLLOWUP_SOURCE_LABEL, label

    names = {
        c: FOLLOWUP_SOURCE_LABEL[0 if lang == "zh" else 1] if c == "source" else label(c, lang)
        for c in tasks.columns
    }
    return tasks.rename(columns=names)


def task_sheets(
    shown: pd.DataFrame,
    cap: int,
    *,
    lang: str = "zh",
    full_file: str = "followups.csv",
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The sheets of followups.xlsx: one 跟进任务 sheet, or one sheet per owner when there are
    more than ``cap`` tasks; an owner's sheet holds at most ``cap`` tasks (most urgent first,
    as :func:`due_followups` sorts them) and a note naming how many more and ``full_file``,
    where the caller writes every task. Returns (sheets, notes) for ``write_xlsx_sheets``."""
    from custtool.labels import text
    from custtool.xlsx import cap_sheets, unique_sheet_names

    table = task_table(shown, lang)
    if len(shown) <= cap or "owner" not in shown.columns:
        sheets = {TASK_SHEET: table}
    else:
        owner = shown["owner"].astype("string").fillna("").str.strip()
        owner = owner.mask(owner == "", text("blank", lang))
        groups = table.groupby(owner.to_numpy(), sort=True)
        keys = list(groups.groups)
        names = unique_sheet_names([str(k) for k in keys])
        sheets = {n: groups.get_group(k) for n, k in zip(names, keys, strict=True)}
    return cap_sheets(sheets, cap, {n: full_file for n in sheets}, lang=lang)


def apply_transitions(
    customers: pd.DataFrame, log: pd.DataFrame, config: FollowupConfig | None = None
) -> pd.DataFrame:
    """Customers with ``status`` set from the latest mapped follow-up result.

    Adds ``status_previous``, ``status_reason`` (the result that caused it) and
    ``status_changed`` (its date); customers without a mapped result keep their status.
    """
    _check_log(log)
    config = config or load_followup_rules()
    out = customers.copy(deep=False)  # copy-on-write: new columns only, no full copy
    if "status" not in out:
        out["status"] = ""
    out["status_previous"] = out["status"]
    out["status_reason"] = ""
    out["status_changed"] = pd.NaT
    if "result" not in log or not config.transitions:
        return out
    linked = link_log(customers, log)
    mapped = linked[linked["result"].isin(config.transitions)]
    if mapped.empty:
        return out
    last = (
        mapped.sort_values("time", kind="mergesort")
        .groupby("customer_id")
        .tail(1)
        .set_index("customer_id")
    )
    cid = out["customer_id"].astype(str)
    has = cid.isin(last.index)
    out.loc[has, "status"] = cid[has].map(last["result"].map(config.transitions)).to_numpy()
    out.loc[has, "status_reason"] = cid[has].map(last["result"]).to_numpy()
    out.loc[has, "status_changed"] = cid[has].map(last["time"].dt.normalize()).to_numpy()
    return out
