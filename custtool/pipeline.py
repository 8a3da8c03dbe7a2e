"""`custtool run pipeline.yaml`: import → clean → segment → tag → follow-ups → report → cards.

One YAML names the inputs (globs allowed, a channel per input) and each step's options.
Everything a run writes goes into one folder per as-of date (``out/2026-10-31/``), built
in a hidden staging folder and renamed into place only when every step has succeeded:
a crash leaves the previous run's folder as it was and no half-written files. The
manifest (``manifest.json``) records the tool version, the config hash, every input with
its size and SHA-256, the rows at every step, the outputs, timings and warnings.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custtool.atomic import file_sha256, pid_alive
from custtool.errors import InputError
from custtool.memory import release_memory

KINDS = ("customers", "orders", "interactions", "surveys")
#: the columns of the attributed orders the report and the cards read (the run reads only
#: these back from orders_attributed.parquet, whichever engine wrote it)
ATTRIBUTED_ORDER_COLUMNS = (
    "customer_id",
    "source_customer_id",
    "match_key",
    "order_time",
    "amount",
    "category",
)
#: the attributed-order columns the cards read (top categories). The run passes the file's
#: path (``attributed=True``): DuckDB reads these two columns there and only counts come
#: back; ``read_attributed(..., CARD_ORDER_COLUMNS, codes=True)`` gives the same cards as a
#: DataFrame (``custtool cards --orders``, tests)
CARD_ORDER_COLUMNS = ("customer_id", "category")
#: the attributed-order columns the owners' workbooks read (each owner's orders by
#: ``customer_id``; 概览's monthly revenue: order time and amount), text as dictionary codes
OWNER_ORDER_COLUMNS = ("customer_id", "source_customer_id", "match_key", "order_time", "amount")
STEP_KEYS = ("clean", "segment", "tag", "followups", "report", "cards")


@dataclass
class InputSpec:
    kind: str
    pattern: str
    channel: str | None
    sheet: str | None
    encoding: str | None
    files: list[Path] = field(default_factory=list)


@dataclass
class Pipeline:
    """A checked pipeline file."""

    path: Path
    text: str
    name: str
    out: Path
    as_of: str | None
    timezone: str
    fail_on_rejects: int | None
    inputs: list[InputSpec]
    fields: Path | None
    steps: dict[str, dict[str, Any]]
    sensitive: str | None = None  # drop | mask | clear | encrypt (custtool.crypto)
    book: Path | None = None  # the customer book; None: off (book: false)
    book_wait: float | None = None
    deliver: Any = None  # custtool.config.DeliverConfig: the e-mail subscriptions (deliver:)

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass
class RunResult:
    """What a run did: the run folder, the manifest, and whether rejects went over the limit."""

    folder: Path
    manifest: dict[str, Any]
    over_reject_limit: bool
    delivery: Any = None  # custtool.deliver.DeliveryResult when the run sent e-mail

    @property
    def exit_code(self) -> int:
        """0 done; 1 done but more input rows rejected than ``fail_on_rejects`` allows, or
        an e-mail that could not be sent (the run folder is complete either way)."""
        sent_ok = self.delivery is None or not self.delivery.exit_code
        return int(self.over_reject_limit or not sent_ok)

    def to_dict(self) -> dict[str, Any]:
        """The machine summary (what `run --json` prints): the folder, the limit check and the manifest."""
        out = {
            "folder": str(self.folder),
            "over_reject_limit": self.over_reject_limit,
            **self.manifest,
        }
        if self.delivery is not None:
            out["delivery"] = self.delivery.to_dict()
        return out


# --------------------------------------------------------------------------- config
def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read and check a pipeline file (:class:`custtool.config.PipelineFile`); errors name
    the file, the line and the key."""
    from custtool.config import PipelineFile, load_model, read_yaml
    from custtool.segment import load_segment_config

    p = Path(path)
    hint = "see examples/pipeline.yaml"
    model = load_model(PipelineFile, p, what="pipeline file", hint=hint)
    doc = read_yaml(p, what="pipeline file")  # for the lines of the checks below
    base = p.parent
    inputs: list[InputSpec] = []
    for kind in KINDS:
        for i, entry in enumerate(getattr(model.inputs, kind) or []):
            full = entry.path if os.path.isabs(entry.path) else str(base / entry.path)
            files = sorted(Path(f) for f in glob.glob(full))
            if not files:
                raise doc.error(
                    ("inputs", kind, i, "path"),
                    f"no file matches {entry.path!r}",
                    f"paths are relative to {base}",
                )
            sheet = None if entry.sheet is None else str(entry.sheet)
            inputs.append(InputSpec(kind, entry.path, entry.channel, sheet, entry.encoding, files))
    if not any(i.kind in ("customers", "orders") for i in inputs):
        raise doc.error(
            ("inputs",),
            "needs customers or orders files",
            "name the customers or orders files under inputs:",
        )
    steps: dict[str, dict[str, Any]] = {}
    for step in STEP_KEYS:
        opts = getattr(model, step)
        steps[step] = {} if opts is None else opts.model_dump(exclude_none=True)
        for key in ("rules", "config", "strategies", "manual"):
            value = steps[step].get(key)
            if isinstance(value, str) and value:
                resolved = value if os.path.isabs(value) else str(base / value)
                if not Path(resolved).exists():
                    raise doc.error(
                        (step, key), f"file not found: {value}", f"paths are relative to {base}"
                    )
                steps[step][key] = resolved
    out = Path(model.out or "out")
    # the firm's time zone: the pipeline's, else the segment settings' (rules/segments.yaml)
    timezone = model.timezone or load_segment_config(steps["segment"].get("config"))["timezone"]
    return Pipeline(
        path=p,
        text=doc.text,
        name=model.name or p.stem,
        out=Path(os.path.normpath(out if out.is_absolute() else base / out)),
        as_of=None if model.as_of is None else model.as_of.isoformat(),
        timezone=timezone,
        fail_on_rejects=model.fail_on_rejects,
        inputs=inputs,
        fields=(Path(model.fields) if os.path.isabs(model.fields) else base / model.fields)
        if model.fields
        else None,
        steps=steps,
        sensitive=model.sensitive,
        book=_book_path(model.book, base, out if out.is_absolute() else base / out),
        book_wait=model.book_wait,
        deliver=model.deliver,
    )


def _book_path(value: str | bool | None, base: Path, out: Path) -> Path | None:
    """``book:`` of the pipeline: a path (relative to the file), false (off), or the default
    ``<out>/custtool.duckdb``."""
    from custtool.book import BOOK_NAME

    if value is False:
        return None
    if value is None or value is True:
        return Path(os.path.normpath(out / BOOK_NAME))
    p = Path(value)
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


# --------------------------------------------------------------------------- orders engine
@dataclass
class OrdersEngine:
    """How the run handles its orders: in memory (pandas) or out of core (``engine`` duckdb
    or spark over the Parquet the streamed import writes), and why."""

    out_of_core: bool
    engine: str
    memory_limit: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_of_core": self.out_of_core,
            "engine": self.engine,
            "memory_limit": self.memory_limit,
            "reason": self.reason,
        }


def orders_out_of_core(pl: Pipeline) -> OrdersEngine:
    """The one rule for where the run's orders go (README "Performance"):

    - ``segment: engine: pandas`` → in memory (the user's choice, whatever the size);
    - ``segment: engine: duckdb`` or ``spark`` → out of core: the orders are imported in
      batches straight to ``imported_orders.parquet`` (never a DataFrame of all orders) and
      the engine segments over it and writes ``orders_attributed.parquet`` itself;
    - no engine given → out of core with DuckDB when ``segment: memory_limit:`` is set, or
      when the orders files hold more than ``out_of_core.orders_rows`` rows (estimated as
      their bytes / ``out_of_core.bytes_per_row``, rules/segments.yaml); else in memory.

    Out of core without ``segment: memory_limit:``, DuckDB gets ``out_of_core.memory_limit``.
    """
    from custtool.engines import parse_memory_limit
    from custtool.segment import load_segment_config

    opts = pl.steps["segment"]
    engine = opts.get("engine")
    limit = parse_memory_limit(opts.get("memory_limit"))
    ooc = load_segment_config(opts.get("config"))["out_of_core"]
    if engine == "pandas":
        return OrdersEngine(False, "pandas", limit, "segment: engine: pandas")
    # out of core without a limit of its own, DuckDB is bounded by the shipped one
    default = limit if limit is not None else parse_memory_limit(ooc.get("memory_limit"))
    if engine in ("duckdb", "spark"):
        return OrdersEngine(True, engine, default, f"segment: engine: {engine}")
    if limit is not None:
        return OrdersEngine(True, "duckdb", limit, "segment: memory_limit: is set")
    size = sum(f.stat().st_size for i in pl.inputs if i.kind == "orders" for f in i.files)
    estimate = size // ooc["bytes_per_row"]
    if ooc["orders_rows"] and estimate > ooc["orders_rows"]:
        return OrdersEngine(
            True,
            "duckdb",
            default,
            f"about {estimate:,} order rows ({size:,} bytes) > out_of_core.orders_rows "
            f"{ooc['orders_rows']:,}",
        )
    return OrdersEngine(False, "pandas", None, f"about {estimate:,} order rows: in memory")


def _import_orders_streamed(
    specs: list[InputSpec],
    folder: Path,
    *,
    fields: Path | None,
    tz: str,
    memory_limit: int | None,
    sensitive: str | None,
    key: Any,
) -> tuple[Path, Any, list[Any]]:
    """The orders files imported batch by batch into ``folder/imported_orders.parquet``
    (:func:`custtool.engines.duckdb_import.import_streamed`; one call per sheet/encoding
    setting, the parts unioned by column name in DuckDB). Returns the Parquet, the last
    protection and the results (their files, rejects and warnings)."""
    from custtool.engines import duckdb_connect
    from custtool.engines.duckdb_import import import_streamed
    from custtool.engines.sql import quote

    target = folder / "imported_orders.parquet"
    groups: dict[tuple[str | None, str | None], list[tuple[Path, str]]] = {}
    for spec in specs:
        for f in spec.files:
            groups.setdefault((spec.sheet, spec.encoding), []).append((f, spec.channel or f.stem))
    results = []
    parts: list[Path] = []
    for n, ((sheet, encoding), files) in enumerate(groups.items()):
        part = target if len(groups) == 1 else folder / f"part-{n}.parquet"
        results.append(
            import_streamed(
                [f for f, _ in files],
                output=part,
                kind="orders",
                channel=[c for _, c in files],
                sheet=sheet,
                encoding=encoding,
                fields=fields,
                tz=tz,
                memory_limit=memory_limit,
                temp_dir=folder,
                sensitive=sensitive,
                key=key,
            )
        )
        parts.append(part)
    if len(parts) > 1:  # files read with different settings: one Parquet, columns by name
        con = duckdb_connect(memory_limit, folder / "duckdb", threads=2)
        try:
            con.execute("SET preserve_insertion_order = true")  # rows as the files give them
            names = ", ".join(quote(str(p)) for p in parts)
            dest = quote(str(target))
            con.execute(
                f"COPY (SELECT * FROM read_parquet([{names}], union_by_name = true)) "
                f"TO {dest} (FORMAT parquet)"
            )
        finally:
            con.close()
        for p in parts:
            p.unlink()
    protection = next((r.protection for r in results if r.protection.columns), None)
    return target, protection or results[-1].protection, results


# --------------------------------------------------------------------------- run
def previous_run(out: Path, as_of: str) -> Path | None:
    """The newest earlier run folder (named by an as-of date before ``as_of``) with results."""
    if not out.is_dir():
        return None
    runs = sorted(
        d
        for d in out.iterdir()
        if d.is_dir() and re.fullmatch(r"\d{4}-\d{2}-\d{2}", d.name) and d.name < as_of
    )
    for d in reversed(runs):
        if (d / "customers.parquet").exists():
            return d
    return None


class _Steps:
    """Timing and row counts of the steps, for the manifest and the summary."""

    def __init__(self, progress: Any = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.progress = progress

    def run(self, name: str, fn: Any, *args: Any, **kw: Any) -> Any:
        """Run one step; ``seconds`` is the step itself, ``seconds_with_outputs`` also
        counts the writing of its outputs (everything up to the next step)."""
        if self.progress:
            self.progress(name)
        t0 = time.perf_counter()
        self.close()
        result = fn(*args, **kw)
        self.records.append(
            {"step": name, "seconds": round(time.perf_counter() - t0, 3), "_start": t0}
        )
        return result

    def close(self) -> None:
        """End the last step's wall-clock span (call before the manifest is written)."""
        if self.records and "_start" in self.records[-1]:
            last = self.records[-1]
            last["seconds_with_outputs"] = round(time.perf_counter() - last.pop("_start"), 3)

    def rows(self, **counts: Any) -> None:
        self.records[-1]["rows"] = counts


def run_pipeline(
    pipeline: Pipeline | str | os.PathLike[str],
    *,
    as_of: str | None = None,
    out: str | os.PathLike[str] | None = None,
    fail_on_rejects: int | None = None,
    progress: Any = None,
    sensitive: str | None = None,
    send: bool = True,
    send_options: dict[str, Any] | None = None,
) -> RunResult:
    """Run every step of the pipeline and write the run folder atomically.

    ``progress`` (optional) is called with each step's name as it starts. Sensitive columns
    are encrypted with ``CUSTTOOL_KEY``; without it the run stops before writing unless
    ``sensitive`` (or the pipeline's ``sensitive:``) is drop, mask or clear.

    With a ``deliver:`` section and ``send`` true, the subscriptions due for the run's as-of
    date are mailed once the run folder is in place (:func:`custtool.deliver.send_run`;
    ``send_options`` are passed on, e.g. ``retries``/``backoff`` in tests). Nothing is sent
    after a failed run, nor after a run over ``fail_on_rejects`` (exit 1: check the rejects,
    then ``custtool send``). Subscription and masking problems stop the run before it writes.
    """
    import pandas as pd

    from custtool import __version__, schemas
    from custtool.cards import group_cards, individual_cards, write_cards
    from custtool.clean import FOLLOWUP_SHEET, dedupe
    from custtool.crypto import load_key
    from custtool.fields import load_fields, sensitive_fields
    from custtool.followups import (
        apply_transitions,
        due_followups,
        link_log,
        load_followup_rules,
        task_sheets,
        task_table,
    )
    from custtool.ingest import import_files
    from custtool.io import (
        atomic_path,
        read_table,
        write_csv_blocks,
        write_table,
        write_xlsx_sheets,
    )
    from custtool.privacy import protect_sensitive
    from custtool.report import write_workbook
    from custtool.report.masking import (
        check_unmask,
        get_role,
        mask_for_output,
        mask_frame,
        mask_sheets,
        role_view,
    )
    from custtool.segment import load_segment_config, segment_customers, write_summary_workbook
    from custtool.tags import apply_tags, load_rules, tag_statistics
    from custtool.xlsx import cap_sheets

    pl = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    key = load_key()
    sensitive_mode = sensitive or pl.sensitive
    privacy: dict[str, Any] = {
        "sensitive": sensitive_mode or ("encrypt" if key else None),
        "key_id": key.id if key else None,
        "columns": {},
    }
    # one masking policy for every export of the run; a role that may not unmask stops the run
    # before anything is written
    export_role = get_role(pl.steps["report"].get("role"))
    check_unmask(export_role, rep_opts_mask(pl))
    if send and pl.deliver is not None:
        from custtool.deliver import check_subscriptions

        # roles, masking and the password variable: checked before anything is written
        check_subscriptions(
            pl.deliver,
            run_mask=rep_opts_mask(pl),
            run_role=export_role.name,
            password=True,
            where=pl.path,
        )
    from custtool.config import sheet_rows_setting

    # rows on a capped sheet (tier/class sheets, 待跟进, follow-up tasks); the rest in CSV
    cap = sheet_rows_setting(pl.steps["report"].get("sheet_rows"))
    # report.html / report.pdf beside report.xlsx (always written), owners/ per 负责人
    from custtool.config import load_report_settings, report_formats_setting

    formats = report_formats_setting(pl.steps["report"].get("formats"))
    split_by = pl.steps["report"].get("split_by") or load_report_settings().split_by
    if "pdf" in formats:  # a missing weasyprint stops the run before anything is written
        from custtool.report.document import load_weasyprint

        load_weasyprint()
    out_dir = Path(out) if out else pl.out
    limit = fail_on_rejects if fail_on_rejects is not None else pl.fail_on_rejects
    steps = _Steps(progress)
    warnings: list[str] = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    book_path = pl.book
    if out and book_path is not None and book_path == pl.out / "custtool.duckdb":
        book_path = Path(out) / "custtool.duckdb"  # the default book follows --out

    inputs_manifest = [
        {
            "kind": i.kind,
            "path": str(f),
            "channel": i.channel or f.stem,
            "bytes": f.stat().st_size,
        }
        for i in pl.inputs
        for f in i.files
    ]
    # the inputs' SHA-256 in a second thread while they are imported (hashlib releases the
    # GIL: 1 GB of orders took 3 s before the import started); read for the manifest
    input_hashes = _hash_files([Path(e["path"]) for e in inputs_manifest])

    # ---- import (nothing is written until the run folder exists)
    imported: dict[str, pd.DataFrame] = {}
    rejects: list[pd.DataFrame] = []
    import_rows: dict[str, Any] = {}
    # out of core: the orders go straight to Parquet in a hidden folder inside out/ (the run
    # folder's name needs the as-of date), moved into the staging folder once it exists
    orders_engine = orders_out_of_core(pl)
    created_out = not out_dir.exists()
    import_dir = out_dir / f".orders-import-{os.getpid()}"
    orders_parquet: Path | None = None

    def import_out_of_core(specs: list[InputSpec]) -> None:
        nonlocal orders_parquet
        _make_folder(out_dir)
        if import_dir.exists():
            shutil.rmtree(import_dir)
        import_dir.mkdir(mode=0o700)
        orders_parquet, protection, results = _import_orders_streamed(
            specs,
            import_dir,
            fields=pl.fields,
            tz=pl.timezone,
            memory_limit=orders_engine.memory_limit,
            sensitive=sensitive_mode,
            key=key,
        )
        files: list[dict[str, Any]] = []
        for r in results:
            if len(r.rejects):
                rejects.append(r.rejects.assign(kind="orders"))
            files.extend(x.as_dict() for x in r.files)
            warnings.extend(r.warnings)
        if protection is not None and protection.columns:
            privacy["columns"]["orders"] = protection.columns
            privacy["sensitive"] = protection.mode
        totals = {
            k: sum(f[k] for f in files) for k in ("rows_read", "accepted", "rejected", "skipped")
        }
        import_rows["orders"] = {"files": files, **totals}

    def do_import() -> None:
        for kind in KINDS:
            specs = [i for i in pl.inputs if i.kind == kind]
            if not specs:
                continue
            if kind == "orders" and orders_engine.out_of_core:
                import_out_of_core(specs)
                continue
            frames: list[pd.DataFrame] = []
            files: list[dict[str, Any]] = []
            for spec in specs:
                for f in spec.files:
                    r = import_files(
                        f,
                        kind=kind,
                        channel=spec.channel,
                        sheet=spec.sheet,
                        encoding=spec.encoding,
                        fields=pl.fields,
                        tz=pl.timezone,
                    )
                    frames.append(r.data)
                    if len(r.rejects):
                        rejects.append(r.rejects.assign(kind=kind))
                    files.extend(x.as_dict() for x in r.files)
                    warnings.extend(r.warnings)
            imported[kind] = (
                pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
            )
            # decided before anything is written: encrypt, or the user's explicit choice
            imported[kind], protection = protect_sensitive(
                imported[kind],
                mode=sensitive_mode,
                key=key,
                extra=sensitive_fields(load_fields(pl.fields), kind),
                where=", ".join(f.name for s in specs for f in s.files),
            )
            if protection.columns:
                privacy["columns"][kind] = protection.columns
                privacy["sensitive"] = protection.mode
            for col in imported[kind].columns:
                s = imported[kind][col]
                if s.dtype == object or pd.api.types.is_string_dtype(s):
                    imported[kind][col] = s.fillna("")
            totals = {
                k: sum(f[k] for f in files)
                for k in ("rows_read", "accepted", "rejected", "skipped")
            }
            import_rows[kind] = {"files": files, **totals}

    try:
        steps.run("import", do_import)
    except BaseException:
        _discard_import(import_dir, out_dir, created_out)
        raise
    steps.rows(
        **{
            k: {kk: v[kk] for kk in ("rows_read", "accepted", "rejected", "skipped")}
            for k, v in import_rows.items()
        }
    )
    all_rejects = (
        pd.concat(rejects, ignore_index=True)
        if rejects
        else pd.DataFrame(columns=["kind", *schemas.REJECT_COLUMNS])
    )
    rejected_rows = sum(v["rejected"] for v in import_rows.values())
    run_rows = sum(v["rows_read"] for v in import_rows.values())  # release_memory(run_rows)

    orders = imported.get("orders")
    # the one as-of rule (custtool.dates.resolve_as_of): --as-of, else as_of: in the file,
    # else the latest valid order day; segment, tags and follow-ups all get this one value
    from custtool.dates import resolve_as_of

    try:
        run_as_of = str(
            resolve_as_of(
                as_of or pl.as_of,
                orders_parquet  # out of core: DuckDB's latest order time over the Parquet
                if orders_parquet is not None
                else orders
                if orders is not None and len(orders)
                else None,
                tz=pl.timezone,
            ).date()
        )
        folder = out_dir / run_as_of
        prev_dir = previous_run(out_dir, run_as_of)
        staging = out_dir / f".{run_as_of}.tmp-{os.getpid()}"
        _make_folder(out_dir)
        try:
            recover_leftovers(out_dir)
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir(mode=0o700)  # owner only while it holds unfinished outputs
        except OSError as exc:
            raise _folder_error(out_dir, exc) from None
    except BaseException:
        _discard_import(import_dir, out_dir, created_out)
        raise
    # outputs nothing in the run reads back are written in a second thread while the run
    # goes on (Parquet and the CSV writer work in Arrow, which releases the GIL: the
    # machine's second core); waited for before the report and before the manifest
    side = SideWriter()
    try:
        outputs: list[str] = []
        if orders_parquet is not None:  # the streamed import's Parquet joins the run
            os.replace(orders_parquet, staging / "imported_orders.parquet")
            orders_parquet = staging / "imported_orders.parquet"
            shutil.rmtree(import_dir, ignore_errors=True)
            outputs.append("imported_orders.parquet")
        output_kinds: dict[str, dict[str, Any]] = {}  # file -> kind (and owner) in the manifest

        def save(df: pd.DataFrame, name: str) -> None:
            # a shallow copy: the frame as it is now, whatever the run does to its own
            side.submit(write_table, df.copy(deep=False), staging / name)
            outputs.append(name)

        for kind, df in imported.items():
            save(df, f"imported_{kind}.parquet")
        save(mask_frame(all_rejects, mask=False), "rejects.csv")  # ID numbers and bank cards masked

        # ---- clean
        previous_customers = read_table(prev_dir / "customers.parquet") if prev_dir else None
        clean_opts = pl.steps["clean"]
        if "customers" in imported:
            customers, lineage, clean_report = steps.run(
                "clean",
                dedupe,
                imported["customers"],
                keys=clean_opts.get("keys"),
                survivorship=clean_opts.get("survivorship"),
                channel_priority=clean_opts.get("channel_priority"),
                id_format=clean_opts.get("id_format"),
                previous=previous_customers,
                fuzzy_names=bool(clean_opts.get("fuzzy_names", False)),
                rules=_clean_rules(clean_opts.get("rules")),
            )
            counts = clean_report.counts()
            steps.rows(
                **{
                    k: counts[k]
                    for k in ("rows_in", "exact_duplicates", "merged_rows", "customers_out")
                }
            )
            save(customers, "customers_clean.parquet")
            save(lineage, "lineage.parquet")
            # 待跟进 in full in clean_followup.csv; the workbook lists the first `cap` rows.
            # Masking is row by row: the workbook's sheets are masked once capped, and the
            # full 待跟进 list is masked block by block as the second thread writes it
            # (1M flagged customers were masked whole for a workbook showing 1,000)
            raw_sheets = clean_report.sheets()
            followup_sheet = FOLLOWUP_SHEET["zh"]
            if followup_sheet in raw_sheets:
                side.submit(
                    write_csv_blocks,
                    raw_sheets[followup_sheet].copy(deep=False),
                    staging / "clean_followup.csv",
                    lambda block: mask_frame(block, mask=rep_opts_mask(pl)),
                )
                outputs.append("clean_followup.csv")
            sheets, notes = cap_sheets(raw_sheets, cap, {followup_sheet: "clean_followup.csv"})
            sheets = mask_sheets(sheets, mask=rep_opts_mask(pl))
            del raw_sheets
            with atomic_path(staging / "clean_report.xlsx") as tmp:
                write_xlsx_sheets(sheets, tmp, notes=notes)
            outputs.append("clean_report.xlsx")
            del lineage, sheets, notes
            clean_report = None  # its tables are written; `counts` is what the report needs
        else:
            customers, clean_report, counts = None, None, None
        previous_customers = None  # memory: the previous run's customers, read again by the report

        # ---- segment
        seg_opts = pl.steps["segment"]
        seg_cfg = load_segment_config(seg_opts.get("config"))
        seg_cfg["timezone"] = pl.timezone
        if orders is None and orders_parquet is None:
            raise InputError(
                "the pipeline has no orders input",
                "add inputs: orders: [订单.csv] — segmenting needs orders",
            )
        attributed_path = staging / "orders_attributed.parquet"
        segment = steps.run(
            "segment",
            segment_customers,
            orders_parquet if orders_parquet is not None else orders,
            customers,
            surveys=imported.get("surveys"),
            interactions=imported.get("interactions"),
            as_of=run_as_of,
            window=seg_opts.get("window"),
            config=seg_cfg,
            engine=orders_engine.engine,
            memory_limit=orders_engine.memory_limit,
            spark_master=seg_opts.get("spark_master"),
            # out of core the engine writes the attributed orders itself
            attributed_to=attributed_path if orders_parquet is not None else None,
        )
        seg_summary = segment.to_dict()
        order_rows = seg_summary["orders"]
        steps.rows(
            customers=seg_summary["customers"],
            order_rows=order_rows["rows"],
            rows_used=order_rows["rows_used"],
            orders_used=seg_summary["orders_used"],
            orders_unmatched=seg_summary["orders_unmatched"],
            rows_duplicate=order_rows["rows_duplicate"],
            rows_after_as_of=order_rows["rows_after_as_of"],
        )
        save(segment.customers, "segmented.parquet")
        if orders_parquet is None:
            save(segment.orders, "orders_attributed.parquet")  # pivot --orders, report, cards
        else:
            outputs.append("orders_attributed.parquet")
        # memory: what the later steps no longer need goes now (10M order rows are GBs).
        # The raw orders and surveys are in imported_*.parquet; the attributed orders are
        # read back (only ATTRIBUTED_ORDER_COLUMNS) when the report needs them, on either path
        segment.orders = None
        orders = None
        customers = None
        for kind in ("customers", "orders", "surveys"):
            imported.pop(kind, None)
        with atomic_path(staging / "segment_summary.xlsx") as tmp:
            write_summary_workbook(segment, tmp, mask=rep_opts_mask(pl))
        outputs.append("segment_summary.xlsx")
        # memory: the match report's per-row arrays (one entry per order used: 10M orders in
        # memory are ~0.4 GB) and its unmatched rows are written (the attributed orders,
        # segment_summary.xlsx); its counts are in seg_summary for the manifest
        for name in (
            "unmatched",
            "used_rows",
            "used_customers",
            "used_amounts",
            "used_in_window",
            "used_how",
            "used_times",
            "customer_ids",
            "portrait_groups",
        ):
            if getattr(segment.report, name, None) is not None:
                setattr(segment.report, name, None)

        # ---- tag
        tag_opts = pl.steps["tag"]
        rules = load_rules(tag_opts.get("rules"))
        manual = read_table(tag_opts["manual"]) if tag_opts.get("manual") else None
        tagged = steps.run(
            "tag",
            apply_tags,
            segment.customers,
            rules,
            max_tags=tag_opts.get("max_tags", 10),
            manual=manual,
            as_of=run_as_of,
        )
        stats = tag_statistics(tagged, rules)
        tagged_n = int(tagged["tags"].map(len).gt(0).sum())
        steps.rows(customers=len(tagged), customers_tagged=tagged_n)
        with atomic_path(staging / "tag_stats.xlsx") as tmp:
            write_xlsx_sheets(stats.sheets(), tmp)
        outputs.append("tag_stats.xlsx")

        # ---- follow-ups (status transitions feed the report)
        fu_opts = pl.steps["followups"]
        final = tagged
        tasks = None
        interactions = imported.get("interactions")
        if interactions is not None and fu_opts.get("enabled", True):
            fu_cfg = load_followup_rules(fu_opts.get("rules"))

            def followup_step(
                customers: pd.DataFrame, log: pd.DataFrame
            ) -> tuple[pd.DataFrame, pd.DataFrame]:
                # the log linked to the customers once, for the status changes and the tasks,
                # with the segment's index of them (the tagged rows are the segmented ones)
                linked = link_log(customers, log, index=segment.report.customer_index)
                return apply_transitions(customers, linked, fu_cfg), linked

            final, linked_log = steps.run("followups", followup_step, tagged, interactions)
            tasks = due_followups(final, linked_log, fu_cfg, as_of=run_as_of)
            # the report's and the owners' funnels read the linked log (by customer id; not
            # matched again against a million customers, nor per owner)
            interactions = linked_log
            del linked_log
            steps.rows(
                tasks=len(tasks),
                overdue=int((tasks["state"] == "逾期").sum()),
                status_changes=int((final["status_reason"] != "").sum()),
            )
            shown = mask_for_output(
                tasks,
                role=export_role,
                mask=rep_opts_mask(pl),
                owner=pl.steps["report"].get("owner"),
            )
            fu_lang = pl.steps["report"].get("lang", "zh")
            save(task_table(shown, fu_lang), "followups.csv")  # every task
            # one sheet per owner when long, each capped with a note naming followups.csv
            fu_sheets, fu_notes = task_sheets(shown, cap, lang=fu_lang)
            with atomic_path(staging / "followups.xlsx") as tmp:
                write_xlsx_sheets(fu_sheets, tmp, notes=fu_notes)
            outputs.append("followups.xlsx")
        segment.report.customer_index = None  # memory: surveys and the log are matched
        # customers.parquet: written after the report, beside customers.csv (the report's
        # memory peak is not raised by the Parquet's Arrow copy of the table)
        outputs.append("customers.parquet")
        # memory: the segmented and tagged frames are written; only `final` goes on
        segment.customers = None
        del tagged

        # ---- the book's KPIs (recorded below) and its earlier runs, for the 趋势 sheet
        from custtool.book import TREND_KEYS, run_kpis

        # the run's KPIs: one computation for the manifest, the book and the e-mail
        book_figures: dict[str, Any] | None = run_kpis(
            final, nps=segment.nps, summary=segment.summary
        )
        book_trend: list[dict[str, Any]] | None = None
        if book_path is not None:
            from custtool.book import trend, trend_row

            earlier = trend(book_path).runs if book_path.exists() else []
            book_trend = [r for r in earlier if r["as_of"] < run_as_of]
            book_trend.append(trend_row(run_as_of, book_figures))

        # ---- report
        rep_opts = pl.steps["report"]
        previous_final = read_table(prev_dir / "customers.parquet") if prev_dir else None
        # the attributed orders of the report, the owners' workbooks and the cards: each reads
        # only its columns (text as codes) from the Parquet the segment step wrote (either
        # engine), just before it, and lets them go after (memory: 10M orders' six columns
        # were held from the report to the end)
        side.wait()  # the earlier outputs are written (and their frames let go)
        release_memory(run_rows)  # what segment, tag and follow-ups let go
        # every customer the report shows, in customers.csv beside it (the capped tier/class
        # sheets and an over-limit 客户明细 point there), = mask_for_output(final, …): the
        # role's rows and columns, masked by the one policy and written in blocks of rows
        # (one block's masked copy at a time), in the second thread while the report is
        # written (1M customers: ~15 s of one core beside the report's ~1.5)
        side.submit(
            write_csv_blocks,
            role_view(final, export_role, owner=rep_opts.get("owner")).copy(deep=False),
            staging / "customers.csv",
            lambda block: mask_frame(block, mask=rep_opts_mask(pl)),
        )
        report = steps.run(
            "report",
            write_workbook,
            final,
            staging / "report.xlsx",
            # the file: 概览 reads its columns while it is written and lets them go before
            # 客户明细 (memory: 10M orders' five columns were held through the whole report)
            orders=attributed_path,
            rejects=all_rejects,
            clean_report=counts,
            strategies=rep_opts.get("strategies"),
            previous=previous_final,
            role=rep_opts.get("role"),
            owner=rep_opts.get("owner"),
            mask=bool(rep_opts.get("mask", True)),
            lang=rep_opts.get("lang", "zh"),
            segment_sheets=bool(rep_opts.get("segment_sheets", True)),
            nps=segment.nps,
            interactions=interactions,  # the 销售漏斗 sheet
            as_of=run_as_of,
            trend=book_trend,
            sheet_rows=cap,
            full_list="customers.csv",
        )
        previous_final = None  # memory: the migration sheet is written
        all_rejects = None  # in rejects.csv and the report's 数据质量 sheet
        steps.rows(customers=report.customers, sheets=len(report.sheets))
        warnings.extend(report.warnings)
        outputs.append("report.xlsx")
        output_kinds["report.xlsx"] = {"kind": "report"}
        # customers.parquet in the second thread too (after customers.csv) while the
        # HTML/PDF, the owners' workbooks, the cards and the book go on
        side.submit(write_table, final.copy(deep=False), staging / "customers.parquet")
        outputs.append("customers.csv")
        output_kinds["customers.csv"] = {"kind": "csv"}
        release_memory(run_rows)

        # ---- report.html / report.pdf: the figures of 概览, one template (issue 17)
        doc_options = dict(
            nps=segment.nps,
            strategies=rep_opts.get("strategies"),
            role=export_role,
            owner=rep_opts.get("owner"),
            mask=rep_opts_mask(pl),
            lang=rep_opts.get("lang", "zh"),
            as_of=run_as_of,
        )
        for fmt in ("html", "pdf"):
            if fmt not in formats:
                continue
            from custtool.report.document import write_html, write_pdf

            writer = write_html if fmt == "html" else write_pdf
            steps.run(f"report_{fmt}", writer, final, staging / f"report.{fmt}", **doc_options)
            outputs.append(f"report.{fmt}")
            output_kinds[f"report.{fmt}"] = {"kind": fmt}
        # ---- one masked workbook per owner (the sales role's view): owners/<name>.xlsx
        if split_by == "owner":
            from custtool.report.owners import FOLDER, write_owner_workbooks

            attributed = read_attributed(attributed_path, OWNER_ORDER_COLUMNS, codes=True)
            owners = steps.run(
                "owner_reports",
                write_owner_workbooks,
                final,
                staging / FOLDER,
                orders=attributed,
                interactions=interactions,
                strategies=rep_opts.get("strategies"),
                lang=rep_opts.get("lang", "zh"),
                as_of=run_as_of,
                sheet_rows=cap,
                tasks=tasks,  # each owner's 跟进任务
            )
            attributed = None
            steps.rows(owners=len(owners.workbooks), customers=owners.customers)
            warnings.extend(owners.warnings)
            for wb in owners.workbooks:
                for f in (wb.path, wb.full_list):
                    if f is None:
                        continue
                    name = f"{FOLDER}/{f.name}"
                    outputs.append(name)
                    output_kinds[name] = {
                        "kind": "owner_report" if f == wb.path else "owner_customers",
                        "owner": wb.owner,
                        "unassigned": wb.unassigned,
                        "customers": wb.customers,
                    }

        interactions = None  # memory: the funnel sheets are written; the book needs tasks only
        imported.pop("interactions", None)

        # ---- cards
        card_opts = pl.steps["cards"]
        if card_opts.get("enabled", True):
            fmt = card_opts.get("format", "html")
            by = card_opts.get("by", "rfm_class")
            mask = bool(rep_opts.get("mask", True))
            role = rep_opts.get("role")
            # the orders stay in orders_attributed.parquet: DuckDB counts the categories the
            # cards show (10M orders read into pandas as codes took ~5 s and ~1 GB)
            ind = steps.run(
                "cards",
                individual_cards,
                final,
                card_opts.get("customers") or None,
                top=None if card_opts.get("customers") else 20,
                orders=attributed_path,
                role=role,
                owner=rep_opts.get("owner"),
                mask=mask,
                lang=rep_opts.get("lang", "zh"),
                strategies=rep_opts.get("strategies"),
                attributed=True,  # orders_attributed.parquet: customer_id is the match
                memory_limit=orders_engine.memory_limit,
            )
            grp = group_cards(
                final,
                by=by,
                segments=card_opts.get("segments") or None,
                orders=attributed_path,
                role=role,
                owner=rep_opts.get("owner"),
                lang=rep_opts.get("lang", "zh"),
                attributed=True,
                memory_limit=orders_engine.memory_limit,
            )
            release_memory(run_rows)
            write_cards(
                ind, grp, staging / f"cards.{fmt}", fmt=fmt, lang=rep_opts.get("lang", "zh")
            )
            steps.rows(individual=len(ind), groups=len(grp))
            outputs.append(f"cards.{fmt}")

        steps.close()

        def finished() -> dict[str, Any]:
            """The manifest, once every output is in the staging folder (it sizes them)."""
            side.wait()
            release_memory(run_rows)
            return {
                "tool": "custtool",
                "version": __version__,
                "pipeline": str(pl.path),
                "name": pl.name,
                "config_sha256": pl.config_hash,
                "as_of": run_as_of,
                "timezone": pl.timezone,
                "previous_run": str(prev_dir) if prev_dir else None,
                "inputs": [
                    {**e, "sha256": h}
                    for e, h in zip(inputs_manifest, input_hashes.result(), strict=True)
                ],
                "rows": {
                    "import": import_rows,
                    "clean": counts,
                    "segment": {
                        **{
                            k: seg_summary[k]
                            for k in (
                                "customers",
                                "customers_with_orders",
                                "orders_used",
                                "orders_unmatched",
                            )
                        },
                        "order_rows": {
                            k: v
                            for k, v in seg_summary["orders"].items()
                            if k.startswith(("rows", "orders"))
                        },
                    },
                    "tag": steps.records[[r["step"] for r in steps.records].index("tag")].get(
                        "rows"
                    ),
                },
                "nps": seg_summary["nps"],  # the one NPS (segment step; the report shows the same)
                # headline figures (custtool.book.run_kpis: the report's 概览 and the book's kpis)
                "kpis": {k: book_figures.get(k) for k in TREND_KEYS} if book_figures else {},
                # how the exports were written (custtool.deliver refuses to mail unmasked files
                # unless a subscription may have them)
                "report": {
                    "role": export_role.name,
                    "mask": rep_opts_mask(pl),
                    "owner": pl.steps["report"].get("owner"),
                },
                "steps": steps.records,
                "outputs": [
                    {
                        "file": name,
                        "bytes": (staging / name).stat().st_size,
                        **output_kinds.get(name, {}),
                    }
                    for name in outputs
                ],
                "rejected_rows": rejected_rows,
                "fail_on_rejects": limit,
                "warnings": warnings,
                # how sensitive columns are stored; the key's id, never the key
                "privacy": privacy,
                # where the orders went: in memory or out of core, and why (orders_out_of_core)
                "orders_engine": orders_engine.to_dict(),
                "book": str(book_path) if book_path else None,
            }

        if book_path is not None and book_figures is not None:
            # the book: one transaction, before the folder is swapped in (a failed append
            # fails the run and leaves both the book and the previous folder as they were)
            from custtool.book import append_run

            made: dict[str, Any] = {}

            def book_row() -> dict[str, Any]:
                # called by the append once the customers are in the book: the book takes
                # them while the second thread ends customers.csv (1M customers: ~6 s
                # that waited for it before), then the run's row gets the outputs' sizes
                made.update(finished())
                return {**made, "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}

            appended = append_run(
                book_path,
                final,
                as_of=run_as_of,
                kpis=book_figures,
                manifest=book_row,
                tasks=tasks,
                **({} if pl.book_wait is None else {"wait": pl.book_wait}),
            )
            manifest = made
            manifest["book_rows"] = appended.rows
        else:
            manifest = finished()
        (staging / "manifest.json").write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
        # swap the finished folder into place
        if folder.exists():
            old = out_dir / f".{run_as_of}.old-{os.getpid()}"
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
        os.chmod(folder, 0o777 & ~_umask())  # finished: an ordinary folder
    finally:
        side.close()  # a failed run: the second thread's writes end before the folder goes
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if created_out and out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed first run leaves no empty folder behind
    result = RunResult(folder, manifest, limit is not None and rejected_rows > limit)
    if send and pl.deliver is not None and not result.over_reject_limit:
        from custtool.deliver import send_run

        result.delivery = send_run(folder, pl.deliver, name=pl.name, **(send_options or {}))
        result.manifest = result.delivery.manifest
    return result


def _folder_error(out_dir: Path, exc: OSError) -> Exception:
    """A run folder that cannot be written (read-only, a file in the way, missing drive):
    exit 2."""
    from custtool.errors import OutputError

    return OutputError(
        f"{out_dir}: cannot write the run folder ({exc.strerror or type(exc).__name__})",
        "set `out:` in the pipeline file (or --out) to a folder you may write to",
        file=str(out_dir),
    )


def _make_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _folder_error(out_dir, exc) from None


def _discard_import(import_dir: Path, out_dir: Path, created_out: bool) -> None:
    """A run that failed before its staging folder: the streamed import's folder goes, and
    an out/ folder this run created is removed when empty."""
    shutil.rmtree(import_dir, ignore_errors=True)
    if created_out and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()


def _hash_files(files: list[Path]) -> Any:
    """A future of the files' SHA-256 (:func:`custtool.atomic.file_sha256`, in order),
    computed in a thread of its own; the thread ends when done."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="custtool-hash")
    try:
        return pool.submit(lambda: [file_sha256(f) for f in files])
    finally:
        pool.shutdown(wait=False)  # the queued hashing still runs; nothing else will


class SideWriter:
    """Writes handed to one second thread, in the order given, while the run goes on.

    ``submit(fn, *args)`` queues ``fn(*args)``; ``wait()`` returns when every queued write
    is done and raises the first one's error (the run fails as if it had been written in
    line); ``close()`` waits without raising (a run failing for another reason) and ends the
    thread. Only for outputs the run does not read back before ``wait()``."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="custtool-write")
        self._pending: list[Any] = []

    def submit(self, fn: Any, *args: Any, **kw: Any) -> None:
        self._pending.append(self._pool.submit(fn, *args, **kw))

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]  # every write ends before one is raised
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first

    def close(self) -> None:
        for f in self._pending:
            f.exception()
        self._pending = []
        self._pool.shutdown(wait=True)


def read_attributed(
    path: str | os.PathLike[str],
    columns: tuple[str, ...] = ATTRIBUTED_ORDER_COLUMNS,
    *,
    codes: bool = False,
    batch_rows: int = 1_000_000,
) -> Any:
    """The attributed orders' ``columns`` (those present; default
    :data:`ATTRIBUTED_ORDER_COLUMNS`) from ``orders_attributed.parquet``: what the report, the
    owners' workbooks and the cards read.

    ``codes``: text columns as pandas categoricals (Arrow dictionary codes into the distinct
    values: 10M orders' ids are 40 MB of codes, not 10M strings); same values, missing cells
    missing; read ``batch_rows`` rows at a time. The run reads each consumer's columns just
    before it and lets them go after."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    cols = [c for c in columns if c in schema.names]
    text = [
        c
        for c in cols
        if pa.types.is_string(schema.field(c).type)
        or pa.types.is_large_string(schema.field(c).type)
    ]
    if not codes or not text:
        return pd.read_parquet(path, columns=cols)
    import numpy as np
    import pyarrow.compute as pc

    other = [c for c in cols if c not in text]
    # a million rows at a time (memory: Parquet decoding of a whole 10M-row column at once
    # costs about twice the column): text columns dictionary-encoded batch by batch (only
    # one batch is ever plain text, the dictionaries unified at the end), the others kept
    # as decoded and converted to pandas as pd.read_parquet does
    # pre_buffer off: Arrow otherwise buffers the row groups' column chunks ahead of the
    # batches (10M rows, the report's five columns: peak +1.44 → +1.17 GB, 14.5 → 9.7 s)
    # read_dictionary: a text column stored with dictionary pages in every row group comes
    # out of the Parquet reader as those codes, never as a batch of plain text (1M orders'
    # four card columns 1.7 s → 0.2 s; 10M orders' category 0.94 → 0.09 s). A column stored
    # plain (DuckDB's customer ids) is read as text and encoded here: the reader's own
    # encoding of plain pages is slower (10M customer ids: ~30 s against ~5 s)
    meta = pq.read_metadata(path)
    where = {meta.schema.column(j).path: j for j in range(meta.num_columns)}
    pages = [
        c
        for c in text
        if c in where
        and meta.num_row_groups
        and all(
            meta.row_group(r).column(where[c]).has_dictionary_page
            for r in range(meta.num_row_groups)
        )
    ]
    pf = pq.ParquetFile(path, pre_buffer=False, read_dictionary=pages)
    pool = pa.default_memory_pool()
    chunks: dict[str, list[Any]] = {c: [] for c in text}
    batches = []
    for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
        for c in text:
            col = batch.column(c)
            chunks[c].append(col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col))
        batches.append(batch.select(other))
        del batch
        pool.release_unused()  # the batch's plain text (mimalloc keeps freed pages otherwise)
    arrow_schema = pf.schema_arrow
    table = pa.Table.from_batches(
        batches,
        schema=pa.schema(
            [arrow_schema.field(c) for c in other],
            metadata=arrow_schema.metadata,
        ),
    )
    del batches
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    coded: dict[str, Any] = {}
    for c in text:
        parts = chunks.pop(c)
        if not parts:
            coded[c] = pd.Categorical([], categories=pd.Index([], dtype="str"))
            continue
        enc = pa.chunked_array(parts).unify_dictionaries()
        del parts
        idx = np.asarray(pc.fill_null(pa.concat_arrays([ch.indices for ch in enc.chunks]), -1))
        dictionary = enc.chunk(0).dictionary if enc.num_chunks else pa.array([], pa.string())
        del enc
        # the categories in the order the values first appear, only those that appear (what
        # dictionary_encode of the plain text gives; a file's dictionary pages may order
        # them otherwise): codes remapped only when the order differs
        order = pd.unique(idx[idx >= 0])
        if len(order) != len(dictionary) or (order != np.arange(len(order))).any():
            recode = np.full(len(dictionary) + 1, -1, dtype=idx.dtype)
            recode[order] = np.arange(len(order), dtype=idx.dtype)
            idx = recode[idx]
            dictionary = dictionary.take(pa.array(order))
            del recode
        categories = pd.Index(dictionary.to_pandas(), dtype="str")
        coded[c] = pd.Categorical.from_codes(idx, categories=categories)
        del idx, order
    return pd.DataFrame(
        {c: coded[c] if c in coded else frame[c].array for c in cols},
        index=pd.RangeIndex(pf.metadata.num_rows),
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_LEFTOVER = re.compile(r"^\.(?P<day>\d{4}-\d{2}-\d{2})\.(?P<what>tmp|old)-(?P<pid>\d+)$")


def recover_leftovers(out_dir: str | os.PathLike[str]) -> list[str]:
    """Tidy what a killed run left in ``out_dir``; returns what was done, one line each.

    - ``.<day>.old-PID`` of a dead process whose ``<day>`` folder is missing (killed between
      the two renames) is renamed back to ``<day>``: the earlier run is recovered, not lost;
    - any other ``.<day>.tmp-PID`` / ``.<day>.old-PID`` of a dead process is removed (it may
      hold unfinished outputs). Folders of live processes (a run in progress) are left alone.
    """
    out = Path(out_dir)
    done: list[str] = []
    if not out.is_dir():
        return done
    for entry in sorted(out.iterdir()):
        m = _LEFTOVER.match(entry.name)
        if not m or not entry.is_dir() or pid_alive(int(m["pid"])):
            continue
        final = out / m["day"]
        if m["what"] == "old" and not final.exists():
            os.replace(entry, final)
            done.append(f"recovered {final.name} from {entry.name}")
        else:
            shutil.rmtree(entry, ignore_errors=True)
            done.append(f"removed {entry.name}")
    return done


def rep_opts_mask(pl: Pipeline) -> bool:
    """Whether the run's exports mask personal data (report: mask, default true)."""
    return bool(pl.steps["report"].get("mask", True))


def _clean_rules(path: str | None) -> Any:
    if not path:
        return None
    from custtool.clean import load_clean_rules

    return load_clean_rules(path)
