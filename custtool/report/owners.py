"""Per-owner workbooks (issue 17): ``owners/<负责人>.xlsx`` and ``owners/未分配.xlsx``.

Each workbook is the tiered report (:func:`custtool.report.workbook.write_workbook`) of one
owner's customers only — summary, their tier / class sheets, their 销售漏斗 when a follow-up
log is given — in the view of the owner's role (:func:`custtool.report.masking.owner_role`,
``own_customers_only: true``, shipped: ``sales``), always masked. Customers with a blank
owner go to 未分配.xlsx. The customers are split once (one groupby), and the orders once by
customer; file names are made safe for every OS (Chinese kept).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

UNASSIGNED = "未分配"
FOLDER = "owners"
_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def safe_file_name(name: str, *, limit: int = 80) -> str:
    """``name`` as a file name every OS accepts: ``/\\:*?"<>|`` and control characters
    removed, no leading/trailing dots or spaces, Windows' reserved names and names a shell
    or spreadsheet reads as an option or a formula (``-x``, ``=1+2``, ``+``, ``@``) prefixed
    with ``_``; Chinese kept. Never empty (``_``)."""
    s = _UNSAFE.sub("", str(name)).strip().strip(". ")
    s = s[:limit].rstrip(". ")
    if _RESERVED.match(s) or s[:1] in ("-", "=", "+", "@"):
        s = "_" + s
    return s or "_"


@dataclass
class OwnerWorkbook:
    owner: str  # the owner's name; 未分配 for the customers without one
    path: Path
    customers: int
    unassigned: bool = False
    full_list: Path | None = None  # the masked CSV beside a capped workbook

    def as_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "unassigned": self.unassigned,
            "path": str(self.path),
            "customers": self.customers,
            "full_list": None if self.full_list is None else str(self.full_list),
        }


@dataclass
class OwnerReports:
    """What :func:`write_owner_workbooks` wrote: one entry per owner, 未分配 last."""

    folder: Path
    role: str
    workbooks: list[OwnerWorkbook] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def customers(self) -> int:
        return sum(w.customers for w in self.workbooks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "role": self.role,
            "customers": self.customers,
            "workbooks": [w.as_dict() for w in self.workbooks],
        }


def owner_keys(customers: pd.DataFrame) -> pd.Series:
    """Each customer's owner as the role view compares it (stripped text; "" = none)."""
    if "owner" not in customers.columns:
        raise InputError(
            "the customers table has no 'owner' (负责人) column, so it cannot be split by owner",
            "map a 负责人 column on import, or leave out --split-by owner",
        )
    return customers["owner"].astype("string").fillna("").str.strip()


def write_owner_workbooks(
    customers: pd.DataFrame,
    folder: str | Path,
    *,
    orders: pd.DataFrame | None = None,
    interactions: pd.DataFrame | None = None,
    strategies: pd.DataFrame | str | Path | None = None,
    lang: str = "zh",
    roles_path: str | Path | None = None,
    as_of: Any = None,
    sheet_rows: int | None = None,
    tasks: pd.DataFrame | None = None,
) -> OwnerReports:
    """One masked workbook per owner in ``folder`` (created), plus 未分配.xlsx when some
    customers have no owner. ``orders``: attributed (``SegmentResult.orders``) or raw
    (attributed once to all ``customers`` here). ``tasks``: the due follow-up tasks
    (:func:`custtool.followups.due_followups`), each owner's on a 跟进任务 sheet. The NPS is
    left out: it is the run's figure over all responses, not an owner's."""
    import pandas as pd

    from custtool.attribution import ensure_attributed
    from custtool.io import write_table
    from custtool.report.masking import mask_for_output, owner_role, unassigned_view_role
    from custtool.report.strategies import load_strategies
    from custtool.report.workbook import write_workbook

    role = owner_role(roles_path)
    keys = owner_keys(customers)
    # the workbook does not read .attrs; pandas deep-copies them on every operation
    customers = customers.copy(deep=False)
    customers.attrs = {}
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    strat = strategies if isinstance(strategies, pd.DataFrame) else load_strategies(strategies)
    # owner -> row positions, one groupby
    positions: dict[str, Any] = {
        str(k): v for k, v in keys.groupby(keys.to_numpy(), sort=True).indices.items()
    }
    names = [k for k in positions if k != ""] + ([""] if "" in positions else [])

    def by_owner(records: pd.DataFrame) -> dict[str, Any]:
        """Row positions of ``records`` per owner of their customer (``customer_id``)."""
        owner_of = pd.Series(keys.to_numpy(), index=customers["customer_id"].astype(str))
        owner_of = owner_of[~owner_of.index.duplicated()]
        rec_owner = records["customer_id"].astype(str).map(owner_of).fillna("")
        return {
            str(k): v
            for k, v in rec_owner.groupby(rec_owner.to_numpy(), sort=False).indices.items()
        }

    order_groups: dict[str, Any] = {}
    attributed: pd.DataFrame | None = None
    if orders is not None:
        attributed = ensure_attributed(orders, customers)
        order_groups = by_owner(attributed)

    # file stems: 未分配 is reserved for the customers without an owner (the name others
    # rely on); owners whose safe names collide get " (2)", " (3)", …
    used: set[str] = {UNASSIGNED} if "" in positions else set()
    stems = {"": UNASSIGNED}
    for key in names[:-1] if "" in positions else names:
        stem = base = safe_file_name(key)
        k = 2
        while stem.lower() in used:
            stem = f"{base} ({k})"
            k += 1
        used.add(stem.lower())
        stems[key] = stem

    task_groups = by_owner(tasks) if tasks is not None else {}

    result = OwnerReports(folder=out, role=role.name)
    for key in names:
        unassigned = key == ""
        shown_name = UNASSIGNED if unassigned else key
        stem = stems[key]
        path = out / f"{stem}.xlsx"
        group = customers.iloc[positions[key]]
        view_role = unassigned_view_role(role) if unassigned else role
        owner = None if unassigned else key
        own_orders = None
        if attributed is not None:
            own_orders = attributed.iloc[order_groups.get(key, [])]
        rep = write_workbook(
            group,
            path,
            orders=own_orders,
            strategies=strat,
            role=view_role,
            owner=owner,
            mask=True,
            lang=lang,
            interactions=interactions,
            as_of=as_of,
            sheet_rows=sheet_rows,
            full_list=f"{stem}_customers.csv",
            tasks=None if tasks is None else tasks.iloc[task_groups.get(key, [])],
        )
        entry = OwnerWorkbook(shown_name, path, rep.customers, unassigned=unassigned)
        if rep.capped or rep.warnings:
            entry.full_list = out / f"{stem}_customers.csv"
            write_table(mask_for_output(group, role=view_role, owner=owner), entry.full_list)
        result.warnings.extend(f"{shown_name}: {w}" for w in rep.warnings)
        result.workbooks.append(entry)
    return result


__all__ = [
    "UNASSIGNED",
    "OwnerReports",
    "OwnerWorkbook",
    "safe_file_name",
    "write_owner_workbooks",
]
