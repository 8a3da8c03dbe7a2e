"""The customer book (SPEC K1–K4): every run recorded in one embedded DuckDB file.

``custtool run`` appends each run to ``<out>/custtool.duckdb`` in ONE transaction
(:func:`append_run`): a killed or failed run leaves the book as it was, a second writer
waits a bounded time and then gets :class:`BookBusyError` (exit 2), and a re-run of the
same as-of date replaces that run's rows. The tables (documented in docs/DATA.md):

- ``runs``: one row per as-of date: started, finished, tool version, config hash, inputs
  (JSON: path, bytes, sha256), rows per step (JSON), the manifest (JSON);
- ``customers``: one row per version of a customer's profile fields (all text):
  ``valid_from`` is the as-of date of the first run that saw the version, ``valid_to`` the
  as-of date of the first run that did not (null: the current version);
- ``segments``: per as-of and customer: metrics, scores, rfm_class, tier, lifecycle,
  status, p_alive, ltv;
- ``tags``: per as-of: customer_id, tag;
- ``kpis``: per as-of: name, value (the figures of the report's 概览 and the segment
  step's shares, :func:`run_kpis`);
- ``followups``: per as-of: the follow-up tasks (``kind='task'``) and status changes
  (``kind='status'``).

Reading: :func:`trend` (KPIs per run), :func:`compare` (migration between two runs) and
:func:`query` (SQL on a read-only connection without file access).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool.errors import ConfigError, CusttoolError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import duckdb
    import pandas as pd

BOOK_NAME = "custtool.duckdb"
DEFAULT_WAIT = 30.0  # seconds a writer waits for another writer before giving up
MAX_WAIT = 86_400.0  # a day: longer is a mistake, not a wait

# the segment step's per-customer columns kept per run, with their DuckDB types
SEGMENT_COLUMNS: dict[str, str] = {
    "first_order": "TIMESTAMP",
    "last_order": "TIMESTAMP",
    "recency": "DOUBLE",
    "frequency": "BIGINT",
    "monetary": "DOUBLE",
    "aov": "DOUBLE",
    "repurchase": "BOOLEAN",
    "r_score": "INTEGER",
    "f_score": "INTEGER",
    "m_score": "INTEGER",
    "rfm_score": "DOUBLE",
    "rfm_class": "VARCHAR",
    "tier": "VARCHAR",
    "lifecycle": "VARCHAR",
    "potential": "BOOLEAN",
    "churn_risk": "BOOLEAN",
    "p_alive": "DOUBLE",
    "ltv": "DOUBLE",
    "nps_score": "DOUBLE",
    "status": "VARCHAR",
}
# columns of the per-customer table that are not profile fields
_NOT_FIELDS = {
    *SEGMENT_COLUMNS,
    "as_of",
    "tags",
    "status_previous",
    "status_reason",
    "status_changed",
}
KPI_SHARES = ("rfm_class", "tier", "lifecycle")
TREND_KEYS = ("customers", "active", "revenue", "aov", "repurchase", "nps", "satisfaction")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    as_of DATE PRIMARY KEY, started TIMESTAMP, finished TIMESTAMP, version VARCHAR,
    config_sha256 VARCHAR, inputs VARCHAR, rows VARCHAR, manifest VARCHAR);
CREATE TABLE IF NOT EXISTS customers (
    customer_id VARCHAR NOT NULL, valid_from DATE NOT NULL, valid_to DATE, row_hash UBIGINT);
CREATE TABLE IF NOT EXISTS segments (as_of DATE NOT NULL, customer_id VARCHAR NOT NULL, {seg});
CREATE TABLE IF NOT EXISTS tags (as_of DATE NOT NULL, customer_id VARCHAR NOT NULL, tag VARCHAR);
CREATE TABLE IF NOT EXISTS kpis (as_of DATE NOT NULL, name VARCHAR NOT NULL, value DOUBLE);
CREATE TABLE IF NOT EXISTS followups (
    as_of DATE NOT NULL, kind VARCHAR NOT NULL, customer_id VARCHAR, owner VARCHAR,
    due_date DATE, state VARCHAR, rule VARCHAR, action VARCHAR,
    status_previous VARCHAR, status VARCHAR, reason VARCHAR, changed TIMESTAMP);
""".format(seg=", ".join(f'"{c}" {t}' for c, t in SEGMENT_COLUMNS.items()))
TABLES = ("runs", "customers", "segments", "tags", "kpis", "followups")


class BookError(CusttoolError):
    """The book cannot be opened, written or queried."""


class BookBusyError(BookError):
    """Another process holds the book's write lock longer than we wait."""


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- connections
def check_wait(wait: float) -> None:
    """``wait`` (seconds a writer waits for another's lock) is a number in [0, a day]."""
    import math

    if not (isinstance(wait, int | float) and math.isfinite(wait) and 0 <= wait <= MAX_WAIT):
        raise ConfigError(
            f"--wait {wait!r}: not a number of seconds between 0 and {MAX_WAIT:g}",
            f"give the seconds to wait for another writer (default {DEFAULT_WAIT:g})",
        )


def connect(
    path: str | Path, *, read_only: bool = False, wait: float = DEFAULT_WAIT
) -> duckdb.DuckDBPyConnection:
    """Open the book; while another process holds its lock, retry for ``wait`` seconds,
    then raise :class:`BookBusyError`. Read-only connections have no file access (no
    COPY TO, ATTACH or read_csv), so a query cannot write anywhere."""
    import duckdb

    check_wait(wait)
    p = Path(path)
    if read_only and not p.exists():
        raise InputError(
            f"{p}: file not found", "the book is written by `custtool run`", file=str(p)
        )
    config = {"enable_external_access": False} if read_only else {}
    deadline = time.monotonic() + wait
    while True:
        try:
            con = duckdb.connect(str(p), read_only=read_only, config=config)
            break
        except duckdb.Error as exc:
            text = str(exc)
            if "lock" not in text.lower():
                raise BookError(
                    f"{p.name}: not a custtool book ({text.splitlines()[0][:160]})",
                    "pass the custtool.duckdb written by `custtool run`",
                ) from None
            if time.monotonic() >= deadline:
                raise BookBusyError(
                    f"{p}: in use by another process (waited {wait:g}s for its lock)",
                    "another `custtool run` (or a DuckDB session) is writing the book; "
                    "run again when it has finished — nothing was changed",
                ) from None
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    if read_only:
        con.execute("SET lock_configuration = true")
    return con


# --------------------------------------------------------------------------- KPIs
def run_kpis(
    customers: pd.DataFrame, *, nps: Any = None, summary: pd.DataFrame | None = None
) -> dict[str, float | None]:
    """The KPIs recorded per run, from the same functions as the report and the segment step.

    customers, active, revenue, aov (客单价), repurchase (复购率), nps: :func:`custtool.report.
    workbook.kpis` (the report's 概览); satisfaction: the segment step's mean satisfaction;
    ``<dim>_share.<segment>``: the customer share (%) of each RFM class, tier and lifecycle
    stage from :func:`custtool.segment.segment_summary` (``SegmentResult.summary``).
    """
    from custtool.report.workbook import kpis
    from custtool.segment import segment_summary

    figures: dict[str, float | None] = {k: None for k in TREND_KEYS}
    figures.update(kpis(customers, nps=nps))
    if isinstance(nps, dict):
        figures["satisfaction"] = nps.get("satisfaction_mean")
    if summary is None:
        if not {"monetary", "recency", "frequency"} <= set(customers.columns):
            return {k: (None if v is None else float(v)) for k, v in figures.items()}
        summary = segment_summary(customers)
    for dim in KPI_SHARES:
        t = summary[summary["dimension"] == dim]
        for seg, share in zip(t["segment"].astype(str), t["customer_share"], strict=True):
            figures[f"{dim}_share.{seg}"] = None if share != share else round(float(share), 4)
    return {k: (None if v is None else float(v)) for k, v in figures.items()}


# --------------------------------------------------------------------------- append
@dataclass
class BookAppend:
    """What :func:`append_run` wrote."""

    path: Path
    as_of: str
    replaced: bool
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "as_of": self.as_of, "replaced": self.replaced, **self.rows}


def profile_fields(customers: pd.DataFrame) -> list[str]:
    """The profile columns of a per-customer table (not metrics, segments, tags or status)."""
    return [
        c
        for c in customers.columns
        if c not in _NOT_FIELDS
        and c != "customer_id"
        and not c.startswith(("_", "tag_", "bg_", "orders_", "monetary_", "interactions_"))
        and c
        not in {
            "growth",
            "historical_value",
            "predicted_purchases",
            "predicted_value",
            "days_since_last_interaction",
            "last_interaction",
            "complaints_365d",
            "missing_fields",
            "follow_up_flag",
            "age",
        }
    ]


def append_run(
    path: str | Path,
    customers: pd.DataFrame,
    *,
    as_of: str,
    kpis: dict[str, float | None],
    manifest: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    fields: Sequence[str] | None = None,
    tasks: pd.DataFrame | None = None,
    wait: float = DEFAULT_WAIT,
    on_written: Callable[[], None] | None = None,
) -> BookAppend:
    """Record one run in the book, in one transaction.

    ``customers``: the run's final per-customer table (segmented, tagged, with status);
    ``fields``: its profile columns (default :func:`profile_fields`), stored as text and
    versioned (valid_from/valid_to); ID numbers and bank cards are masked as in every output
    (:func:`custtool.report.masking.mask_frame`). ``kpis``: :func:`run_kpis`. ``tasks``: the
    follow-up tasks (:func:`custtool.followups.due_followups`). A run as of a date already in
    the book replaces it; a run older than the newest one in the book is refused (the
    customer versions are a chain in as-of order). ``on_written`` is called after every row
    is written and before the commit (progress or tests). ``manifest`` may be a function:
    it is called inside the transaction, after the customers are written and just before
    the run's row (a run's manifest sizes outputs still being written while the book
    takes its customers); its error rolls the append back.
    """
    import pandas as pd

    from custtool.report.masking import mask_frame

    p = Path(path)
    day = str(pd.Timestamp(as_of).date())
    fields = list(fields) if fields is not None else profile_fields(customers)
    fields = [f for f in fields if f in customers.columns and f != "customer_id"]
    import pyarrow as pa
    import pyarrow.compute as pc

    cust = customers.reset_index(drop=True)
    ids = cust["customer_id"].astype("string").fillna("")
    id_array = pa.array(ids, type=pa.string())

    def arrow_text(s: pd.Series) -> Any:
        return pa.array(s.astype("string").array, from_pandas=True)

    # Arrow tables: DuckDB scans them without a copy through Python objects. Built column by
    # column (memory: each profile column masked and converted on its own, no pandas copy of
    # the profile columns; Arrow-backed text is shared, not copied) — the masking policy
    # decides column by column, so the cells are those of mask_frame(cust[fields])
    snap_cols: dict[str, Any] = {"customer_id": id_array}
    for c in fields:
        s = mask_frame(cust[[c]], mask=False)[c]
        if pd.api.types.is_datetime64_any_dtype(s):
            s = s.dt.strftime("%Y-%m-%d %H:%M:%S").str.replace(" 00:00:00", "", regex=False)
        snap_cols[c] = arrow_text(s)
        del s
    snap = pa.table(snap_cols)
    del snap_cols
    seg_cols: dict[str, Any] = {"customer_id": id_array}
    for c, kind in SEGMENT_COLUMNS.items():
        if c in cust.columns:
            seg_cols[c] = (
                arrow_text(cust[c])
                if kind == "VARCHAR"
                else pa.Table.from_pandas(cust[[c]], preserve_index=False).column(0)
            )
    seg = pa.table(seg_cols)
    del seg_cols
    if "tags" in cust.columns:
        lists = pa.array(cust["tags"], type=pa.list_(pa.string()), from_pandas=True)
        flat = pc.list_flatten(lists)
        owner = pc.list_parent_indices(lists)
        keep = pc.fill_null(pc.not_equal(flat, ""), False)
        # codes, not text per tag (memory: 1M customers have ~7M tags): each row's customer
        # as a position in the customers' ids, the tags dictionary-encoded; DuckDB stores
        # the same text
        tag_rows = pa.table(
            {
                "customer_id": pa.DictionaryArray.from_arrays(
                    pc.filter(owner, keep).cast(pa.int32()), id_array
                ),
                "tag": pc.dictionary_encode(pc.filter(flat, keep)),
            }
        )
        del lists, flat, owner, keep
    else:
        tag_rows = pa.table(
            {"customer_id": pa.array([], pa.string()), "tag": pa.array([], pa.string())}
        )
    kpi_rows = pd.DataFrame(
        {"name": list(kpis), "value": pd.array(list(kpis.values()), dtype="Float64")}
    )
    fu = _followup_rows(cust, ids, tasks)

    con = connect(p, wait=wait)
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(SCHEMA)
            latest = con.execute("SELECT max(as_of) FROM runs").fetchone()[0]
            if latest is not None and str(latest) > day:
                raise BookError(
                    f"{p}: the book already holds a later run ({latest}); a run as of {day} "
                    "cannot be put before it",
                    "use another book (book: other.duckdb in the pipeline) or book: false",
                )
            replaced = bool(
                con.execute("SELECT count(*) FROM runs WHERE as_of = ?", [day]).fetchone()[0]
            )
            for t in ("runs", "segments", "tags", "kpis", "followups"):
                con.execute(f"DELETE FROM {t} WHERE as_of = ?", [day])
            con.execute("DELETE FROM customers WHERE valid_from = ?", [day])
            con.execute("UPDATE customers SET valid_to = NULL WHERE valid_to = ?", [day])
            have = {
                r[0]
                for r in con.execute("SELECT name FROM pragma_table_info('customers')").fetchall()
            }
            for c in fields:
                if c not in have:
                    con.execute(f"ALTER TABLE customers ADD COLUMN {_q(c)} VARCHAR")
            all_fields = [
                r[0]
                for r in con.execute("SELECT name FROM pragma_table_info('customers')").fetchall()
                if r[0] not in {"customer_id", "valid_from", "valid_to", "row_hash"}
            ]
            con.register("_snap", snap)
            present = set(fields)
            # a 64-bit hash of every field (absent ones as NULL) tells a changed profile
            hash_expr = "hash({})".format(
                ", ".join(_q(c) if c in present else "NULL::VARCHAR" for c in all_fields) or "''"
            )
            con.execute(
                f"CREATE TEMP VIEW _new AS SELECT customer_id, {hash_expr} AS row_hash"
                + "".join(f", {_q(c)}" for c in fields)
                + " FROM _snap"
            )
            open_versions = con.execute(
                "SELECT count(*) FROM customers WHERE valid_to IS NULL"
            ).fetchone()[0]
            cols = ["customer_id", "row_hash", *fields]
            insert = (
                f"INSERT INTO customers ({', '.join(_q(c) for c in cols)}, valid_from) "
                f"SELECT {', '.join('n.' + _q(c) for c in cols)}, ?::DATE FROM _new n"
            )
            if open_versions:
                # close the versions that changed or whose customer is gone
                con.execute(
                    "UPDATE customers SET valid_to = ? WHERE valid_to IS NULL AND NOT EXISTS "
                    "(SELECT 1 FROM _new n WHERE n.customer_id = customers.customer_id "
                    "AND n.row_hash = customers.row_hash)",
                    [day],
                )
                insert += (
                    " WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.valid_to IS NULL "
                    "AND c.customer_id = n.customer_id AND c.row_hash = n.row_hash)"
                )
            con.execute(insert, [day])  # the new and changed versions
            con.execute("DROP VIEW _new")
            con.unregister("_snap")
            for name, frame in (
                ("segments", seg),
                ("tags", tag_rows),
                ("kpis", kpi_rows),
                ("followups", fu),
            ):
                con.register("_frame", frame)
                cols = [str(c) for c in getattr(frame, "column_names", None) or frame.columns]
                con.execute(
                    f"INSERT INTO {name} (as_of, {', '.join(_q(c) for c in cols)}) "
                    f"SELECT ?::DATE, {', '.join(_q(c) for c in cols)} FROM _frame",
                    [day],
                )
                con.unregister("_frame")
            if callable(manifest):
                manifest = manifest()
            manifest = manifest or {}
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    day,
                    manifest.get("started"),
                    manifest.get("finished"),
                    manifest.get("version"),
                    manifest.get("config_sha256"),
                    json.dumps(manifest.get("inputs", []), ensure_ascii=False, default=str),
                    json.dumps(manifest.get("rows", {}), ensure_ascii=False, default=str),
                    json.dumps(manifest, ensure_ascii=False, default=str),
                ],
            )
            if on_written is not None:
                on_written()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        rows = {
            "customers": len(snap),
            "customer_versions": int(
                con.execute(
                    "SELECT count(*) FROM customers WHERE valid_from = ?", [day]
                ).fetchone()[0]
            ),
            "segments": len(seg),
            "tags": len(tag_rows),
            "kpis": len(kpi_rows),
            "followups": len(fu),
        }
    finally:
        con.close()
    return BookAppend(p, day, replaced, rows)


def _followup_rows(
    customers: pd.DataFrame, ids: pd.Series, tasks: pd.DataFrame | None
) -> pd.DataFrame:
    """Follow-up tasks and status changes in the book's ``followups`` layout."""
    import pandas as pd

    cols = [
        "kind",
        "customer_id",
        "owner",
        "due_date",
        "state",
        "rule",
        "action",
        "status_previous",
        "status",
        "reason",
        "changed",
    ]
    parts = []
    if tasks is not None and len(tasks):
        t = pd.DataFrame({"kind": "task", "customer_id": tasks["customer_id"].astype("string")})
        for c in ("owner", "state", "rule", "action"):
            t[c] = tasks[c].astype("string") if c in tasks.columns else pd.NA
        t["due_date"] = pd.to_datetime(tasks.get("due_date"), errors="coerce")
        parts.append(t)
    if "status_reason" in customers.columns:
        changed = (customers["status_reason"].astype("string").fillna("") != "").to_numpy()
        if changed.any():
            c = customers.loc[changed]
            parts.append(
                pd.DataFrame(
                    {
                        "kind": "status",
                        "customer_id": ids[changed].to_numpy(),
                        "status_previous": c.get("status_previous", pd.Series(pd.NA, index=c.index))
                        .astype("string")
                        .to_numpy(),
                        "status": c["status"].astype("string").to_numpy()
                        if "status" in c
                        else pd.NA,
                        "reason": c["status_reason"].astype("string").to_numpy(),
                        "changed": pd.to_datetime(
                            c.get("status_changed"), errors="coerce"
                        ).to_numpy()
                        if "status_changed" in c
                        else pd.NaT,
                    }
                )
            )
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    out = out.reindex(columns=cols)
    for c in cols:
        if c in ("due_date", "changed"):
            out[c] = pd.to_datetime(out[c], errors="coerce")
        else:
            out[c] = out[c].astype("string")
    return out


# --------------------------------------------------------------------------- reading
def _read(path: str | Path) -> duckdb.DuckDBPyConnection:
    con = connect(path, read_only=True, wait=DEFAULT_WAIT)
    have = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    if "runs" not in have:
        con.close()
        raise BookError(
            f"{Path(path).name}: not a custtool book (no runs table)",
            "pass the custtool.duckdb written by `custtool run`",
        )
    return con


def runs(path: str | Path) -> list[str]:
    """The as-of dates in the book, oldest first."""
    con = _read(path)
    try:
        return [str(r[0]) for r in con.execute("SELECT as_of FROM runs ORDER BY as_of").fetchall()]
    finally:
        con.close()


@dataclass
class Trend:
    """KPIs per run (:func:`trend`)."""

    path: Path
    runs: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs}

    def frame(self) -> pd.DataFrame:
        """One row per run, one column per KPI (shares as ``<dim>_share.<segment>``)."""
        import pandas as pd

        flat = []
        for r in self.runs:
            row = {k: v for k, v in r.items() if not isinstance(v, dict)}
            for k, v in r.items():
                if isinstance(v, dict):
                    row.update({f"{k}.{s}": x for s, x in v.items()})
            flat.append(row)
        return pd.DataFrame(flat)


def trend(path: str | Path) -> Trend:
    """KPIs per run, oldest first: ``{"as_of", "customers", "active", "revenue", "aov",
    "repurchase", "nps", "satisfaction", "rfm_class_share": {…}, "tier_share": {…},
    "lifecycle_share": {…}}``."""
    con = _read(path)
    try:
        rows = con.execute("SELECT as_of, name, value FROM kpis ORDER BY as_of, rowid").fetchall()
    finally:
        con.close()
    by_run: dict[str, list[tuple[str, float | None]]] = {}
    for as_of, name, value in rows:
        by_run.setdefault(str(as_of), []).append((name, value))
    return Trend(Path(path), [trend_row(d, items) for d, items in by_run.items()])


def trend_row(as_of: str, items: Any) -> dict[str, Any]:
    """One run's KPIs (``(name, value)`` pairs, or the :func:`run_kpis` dict) as
    :func:`trend` shows them: shares nested per dimension, counts as integers."""
    pairs = items.items() if isinstance(items, dict) else items
    r: dict[str, Any] = {"as_of": str(as_of), **{k: None for k in TREND_KEYS}}
    for name, value in pairs:
        if "_share." in name:
            dim, seg = name.split(".", 1)
            r.setdefault(dim, {})[seg] = value
        elif name in ("customers", "active"):
            r[name] = None if value is None else int(value)
        else:
            r[name] = value
    return r


COMPARE_DIMS = ("rfm_class", "tier", "lifecycle", "status")
NO_STATUS = "（无状态）"


@dataclass
class Comparison:
    """Migration between two runs (:func:`compare`)."""

    path: Path
    from_: str
    to: str
    matrices: dict[str, pd.DataFrame]
    moves: pd.DataFrame  # customer_id, dimension, before, now, direction (up/down/moved)
    new: int
    lost: int

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from": self.from_, "to": self.to}
        for dim, m in self.matrices.items():
            # a segment × segment table (at most a dozen rows): non-zero cells as nested dicts
            cells = m.astype("int64").stack()
            cells = cells[cells != 0]
            matrix = {str(b): {} for b in m.index}
            for (b, a), n in cells.items():
                matrix[str(b)][str(a)] = int(n)
            moved = self.moves[self.moves["dimension"] == dim]["direction"].value_counts()
            out[dim] = {
                "matrix": matrix,
                "up": int(moved.get("up", 0)),
                "down": int(moved.get("down", 0)),
                "moved": int(moved.sum()),
            }
        out["new"] = self.new
        out["lost"] = self.lost
        return out


def compare(path: str | Path, a: str, b: str) -> Comparison:
    """Who moved between two runs of the book: a matrix per rfm_class, tier, lifecycle and
    status (rows: before; ``（新增）`` customers new in ``b``; column ``（已不在）`` customers
    gone), the list of moves (``up``/``down`` by the order of the classes, tiers and stages),
    and the new and lost counts. The matrices are :func:`custtool.report.migration.
    migration_matrix`, as on the report's 迁移 sheet."""
    import pandas as pd

    from custtool.report.migration import migration_matrix
    from custtool.rfm import NO_ORDERS, segment_order

    con = _read(path)
    try:
        known = [str(r[0]) for r in con.execute("SELECT as_of FROM runs ORDER BY as_of").fetchall()]
        days = []
        for d in (a, b):
            try:
                day = str(pd.Timestamp(d).date())
            except (ValueError, TypeError):
                raise InputError(f"{d!r} is not a date", "use YYYY-MM-DD") from None
            if day not in known:
                raise InputError(
                    f"{Path(path).name} has no run as of {day}",
                    f"runs in the book: {', '.join(known) or 'none'}",
                )
            days.append(day)
        cols = ", ".join(_q(c) for c in ("customer_id", *COMPARE_DIMS))
        frames = [
            con.execute(f"SELECT {cols} FROM segments WHERE as_of = ?", [d])
            .df()
            .assign(status=lambda f: f["status"].astype("string").fillna("").replace("", NO_STATUS))
            for d in days
        ]
    finally:
        con.close()
    before, now = frames
    matrices = {dim: migration_matrix(before, now, by=dim) for dim in COMPARE_DIMS}
    both = before.merge(now, on="customer_id", suffixes=("_before", "_now"))
    moves = []
    for dim in COMPARE_DIMS:
        x = both[f"{dim}_before"].astype("string").fillna("").replace("", NO_ORDERS)
        y = both[f"{dim}_now"].astype("string").fillna("").replace("", NO_ORDERS)
        hit = (x != y).to_numpy()
        order = segment_order(dim)
        # a better class/tier/stage comes first in its order
        rank = {v: i for i, v in enumerate(order)}
        rx, ry = x.map(rank), y.map(rank)
        direction = pd.Series("moved", index=both.index, dtype=object)
        direction[(ry < rx).fillna(False).to_numpy()] = "up"
        direction[(ry > rx).fillna(False).to_numpy()] = "down"
        moves.append(
            pd.DataFrame(
                {
                    "customer_id": both["customer_id"][hit].to_numpy(),
                    "dimension": dim,
                    "before": x[hit].to_numpy(),
                    "now": y[hit].to_numpy(),
                    "direction": direction[hit].to_numpy(),
                }
            )
        )
    ids_before, ids_now = set(before["customer_id"]), set(now["customer_id"])
    return Comparison(
        Path(path),
        days[0],
        days[1],
        matrices,
        pd.concat(moves, ignore_index=True),
        new=len(ids_now - ids_before),
        lost=len(ids_before - ids_now),
    )


@dataclass
class QueryResult:
    """A query's result (:func:`query`)."""

    columns: list[str]
    frame: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        import pandas as pd

        f = self.frame.astype(object).where(self.frame.notna(), None)
        rows = [
            {c: (_iso(v) if isinstance(v, pd.Timestamp) else v) for c, v in r.items()}
            for r in f.to_dict(orient="records")
        ]
        return {"columns": self.columns, "rows": rows}


def _iso(ts: Any) -> str:
    """A date as YYYY-MM-DD, a time as ISO 8601."""
    return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()


def query(path: str | Path, sql: str) -> QueryResult:
    """Run ``sql`` on a read-only connection to the book (no file access); a statement
    that writes, or any SQL error, raises :class:`BookError` (exit 2)."""
    import duckdb

    con = connect(path, read_only=True)
    try:
        try:
            rel = con.execute(sql)
            if rel.description is None:
                return QueryResult([], __import__("pandas").DataFrame())
            df = rel.df()
        except (duckdb.InvalidInputException, duckdb.PermissionException) as exc:
            if (
                "read-only" in str(exc)
                or "disabled by configuration" in str(exc)
                or "lock_configuration" in str(exc)
            ):
                raise BookError(
                    "the book is opened read-only: writes and file access are refused",
                    "query runs SELECT statements; the book changes only through `custtool run`",
                ) from None
            raise BookError(f"query failed: {str(exc).splitlines()[0][:200]}") from None
        except duckdb.Error as exc:
            raise BookError(
                f"query failed: {str(exc).splitlines()[0][:200]}",
                "tables: runs, customers, segments, tags, kpis, followups (docs/DATA.md)",
            ) from None
    finally:
        con.close()
    return QueryResult([str(c) for c in df.columns], df)


# --------------------------------------------------------------------------- import of run folders
def import_runs(
    out: str | Path, book: str | Path | None = None, *, wait: float = DEFAULT_WAIT
) -> list[BookAppend]:
    """Record the earlier run folders of ``out`` (``out/<as-of>/`` with customers.parquet and
    manifest.json) in the book (default ``out/custtool.duckdb``), oldest first; each folder
    is one transaction. KPIs are computed as the pipeline does (:func:`run_kpis`, with the
    manifest's NPS); follow-up tasks are not in a run folder's tables, status changes are."""
    import re

    from custtool.io import read_table

    check_wait(wait)  # a usage mistake, said before the folders are looked at
    root = Path(out)
    if not root.is_dir():
        raise InputError(
            f"{root}: folder not found", "pass the out/ folder of `custtool run`", file=str(root)
        )
    folders = sorted(
        d
        for d in root.iterdir()
        if d.is_dir()
        and re.fullmatch(r"\d{4}-\d{2}-\d{2}", d.name)
        and (d / "customers.parquet").exists()
    )
    if not folders:
        raise InputError(
            f"{root}: no run folders (YYYY-MM-DD/ with customers.parquet)",
            "pass the out/ folder of `custtool run`",
        )
    target = Path(book) if book else root / BOOK_NAME
    done = []
    for d in folders:
        manifest = {}
        if (d / "manifest.json").exists():
            manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        customers = read_table(d / "customers.parquet")
        if "customer_id" not in customers.columns:
            raise InputError(
                f"{d / 'customers.parquet'}: no customer_id column",
                "pass the out/ folder of `custtool run`",
            )
        figures = run_kpis(customers, nps=manifest.get("nps"))
        done.append(
            append_run(
                target,
                customers,
                as_of=manifest.get("as_of", d.name),
                kpis=figures,
                manifest=manifest,
                wait=wait,
            )
        )
    return done
