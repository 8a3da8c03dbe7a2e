"""Each step of the flow from files to files, as the CLI runs it: one function per command.

A step reads its inputs, calls the library (``import_files``, ``dedupe``,
``segment_customers``, ``tag_customers``, ``write_workbook``, …), writes its outputs
(atomically where several belong together) and returns a :class:`StepResult`:
``to_dict()`` is what ``--json`` prints and ``exit_code`` is what the command exits with.
The policy that used to live in the CLI (output checks, staging, defaults, reading
optional inputs, JSON shaping) lives here, so a notebook gets the same files and numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custtool.atomic import all_or_nothing
from custtool.errors import ConfigError, InputError

PathLike = str | Path
TABLE_SUFFIXES = {".parquet", ".csv", ".tsv", ".xlsx"}


@dataclass
class StepResult:
    """What a step did.

    ``data`` is the machine summary (``to_dict()``, what ``--json`` prints); ``exit_code``
    is 0 when done and 1 when done but over an allowed limit (``problem`` says which);
    ``value`` holds the library objects the step produced, for rendering or further use.
    """

    step: str
    data: dict[str, Any]
    exit_code: int = 0
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


def _path(p: PathLike | None) -> Path | None:
    return None if p is None else Path(p)


def refuse_overwriting_inputs(inputs: Sequence[Any], outputs: Sequence[Any]) -> None:
    """An InputError when an output would replace an input (``import 客户.csv -o 客户.csv``
    turned the export into custtool's table): custtool never overwrites its inputs."""
    given = {Path(p).resolve() for p in inputs if p is not None}
    for target in outputs:
        if target is not None and Path(target).resolve() in given:
            raise InputError(
                f"{Path(target).name} is an input: custtool never overwrites its inputs",
                "choose another output name (-o, --rejects, --summary, --stats, --statuses)",
                file=str(target),
            )


def _read_optional(path: PathLike | None) -> Any:
    from custtool.io import read_table

    return None if path is None else read_table(path)


def check_lang(lang: str) -> None:
    """``lang`` is ``zh`` or ``en``."""
    if lang not in {"zh", "en"}:
        raise InputError(f"unknown language {lang!r}", "use --lang zh or --lang en")


# --------------------------------------------------------------------------- import / template
def run_import(
    files: PathLike | Sequence[PathLike],
    *,
    output: PathLike | None = None,
    kind: str | None = None,
    channel: str | Sequence[str] | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
    fields: PathLike | None = None,
    rejects: PathLike | None = None,
    max_rejects: int | None = None,
    mask_rejects: bool = False,
    sensitive: str | None = None,
    progress: Callable[[str], None] | None = None,
    engine: str = "pandas",
    memory_limit: str | int | None = None,
    temp_dir: PathLike | None = None,
) -> StepResult:
    """Import exports; write the table to ``output`` and the rejects beside it (or to ``rejects``).

    ``engine="duckdb"`` with ``kind="orders"`` streams the files in batches to the Parquet
    ``output`` (:mod:`custtool.engines.duckdb_import`: same rows, rejects and counts as
    pandas), spilling to ``temp_dir`` (default: beside the output) within ``memory_limit``
    ("1GB"); other kinds are small and stay on pandas (a warning says so). With the pandas
    engine a ``memory_limit`` reads CSV files in batches sized from it (the same batched
    route, any kind); workbooks are read whole by either engine.

    Sensitive columns (身份证号, 银行卡号, those a fields file marks) are encrypted with the
    key in ``CUSTTOOL_KEY``; without a key the import stops before writing anything unless
    ``sensitive`` is ``drop``, ``mask`` or ``clear`` (:func:`custtool.crypto.protect_sensitive`).

    ``progress`` (optional) is called with each stage's name as it starts: ``reading``,
    ``writing``, ``rejects`` (the last two only when something is written).

    Without ``output`` and ``rejects`` nothing is written (a check). Exit code 1 when more
    rows than ``max_rejects`` are rejected. ``channel``: one for every file, or a list with
    one per file. ``mask_rejects`` masks names, phones and e-mails in the rejects file (ID
    numbers and bank cards always are).
    """
    from custtool.ingest import import_files
    from custtool.io import write_table
    from custtool.report.masking import mask_frame

    if isinstance(channel, (list, tuple)):
        channel = list(channel) if len(channel) != 1 else channel[0]

    stage = progress or (lambda _name: None)
    out, rejects_path = _path(output), _path(rejects)
    if rejects_path is None and out is not None:  # the rejects beside the table by default
        rejects_path = out.with_name(f"{out.stem}_rejects.csv")
    names = [files] if isinstance(files, (str, Path)) else list(files)
    refuse_overwriting_inputs(names, [out, rejects_path])
    from custtool.crypto import load_key
    from custtool.privacy import protect_sensitive

    key = load_key()  # a malformed key stops here, before anything is read or written
    streamed = _streamed_import(
        files,
        output=out,
        rejects=rejects_path,
        kind=kind,
        channel=channel,
        sheet=sheet,
        encoding=encoding,
        fields=fields,
        mask_rejects=mask_rejects,
        max_rejects=max_rejects,
        sensitive=sensitive,
        key=key,
        engine=engine,
        memory_limit=memory_limit,
        temp_dir=temp_dir,
        stage=stage,
    )
    if streamed is not None:
        return streamed
    stage("reading")
    result = import_files(
        files, kind=kind, channel=channel, sheet=sheet, encoding=encoding, fields=fields
    )
    where = ", ".join(Path(str(f)).name for f in names)
    result.data, protection = protect_sensitive(
        result.data, mode=sensitive, key=key, extra=result.sensitive, where=where
    )
    with all_or_nothing() as staged:  # the table and its rejects, or neither
        if out is not None:
            stage("writing")
            write_table(result.data, staged(out))
        if rejects_path is not None:
            stage("rejects")
            write_table(mask_frame(result.rejects, mask=mask_rejects), staged(rejects_path))
    return _import_result(result, out, rejects_path, protection, max_rejects, engine="pandas")


def _streamed_import(
    files: PathLike | Sequence[PathLike],
    *,
    output: Path | None,
    rejects: Path | None,
    kind: str | None,
    channel: str | Sequence[str] | None,
    sheet: str | None,
    encoding: str | None,
    fields: PathLike | None,
    mask_rejects: bool,
    max_rejects: int | None,
    sensitive: str | None,
    key: Any,
    engine: str,
    memory_limit: str | int | None,
    temp_dir: PathLike | None,
    stage: Callable[[str], None],
) -> StepResult | None:
    """:func:`run_import` through the batched route (None: the whole-file pandas route)."""
    from custtool.engines import ENGINES, parse_memory_limit

    if engine not in ENGINES or engine == "spark":
        raise ConfigError(
            f"unknown import engine {engine!r}",
            "use --engine pandas or --engine duckdb (Spark runs the segment step only)",
        )
    limit = parse_memory_limit(memory_limit)
    note = None
    if kind is None and (engine == "duckdb" or limit is not None):
        from custtool.engines.duckdb_import import detect_kind_streamed

        first = files if isinstance(files, (str, Path)) else next(iter(files), None)
        if first is not None:  # the kind of the first file, from its header
            kind = detect_kind_streamed(first, encoding=encoding, fields=fields, sheet=sheet)
    if engine == "duckdb" and kind != "orders":
        note = (
            "--engine duckdb streams orders only (--kind orders); "
            f"{kind or 'these files'} are imported with pandas"
        )
        if limit is None:
            return _with_warning(
                run_import(
                    files,
                    output=output,
                    kind=kind,
                    channel=channel,
                    sheet=sheet,
                    encoding=encoding,
                    fields=fields,
                    rejects=rejects,
                    max_rejects=max_rejects,
                    mask_rejects=mask_rejects,
                    sensitive=sensitive,
                    progress=stage,
                ),
                note,
            )
        engine = "pandas"  # batched by the limit
    if engine == "pandas" and limit is None:
        return None
    if output is not None and output.suffix.lower() != ".parquet":
        raise InputError(
            f"{output.name}: --engine duckdb and --memory-limit write Parquet",
            "name the output orders.parquet",
        )
    if kind is None:
        raise InputError(
            "no header row found to tell the kind of data",
            "add --kind customers, orders, interactions or surveys",
        )
    from custtool.engines.duckdb_import import import_streamed

    stage("reading")
    with all_or_nothing() as staged:  # the table and its rejects, or neither
        result = import_streamed(
            files,
            output=None if output is None else staged(output),
            kind=kind or "orders",
            channel=channel,
            sheet=sheet,
            encoding=encoding,
            fields=fields,
            memory_limit=limit,
            temp_dir=temp_dir,
            sensitive=sensitive,
            key=key,
            engine=engine,
            rejects_output=None if rejects is None else staged(rejects),  # masked, in chunks
            mask_rejects=mask_rejects,
            keep_rejects=False,
        )
    if note:
        result.warnings.append(note)
    return _import_result(
        result, output, rejects, result.protection, max_rejects, engine=engine, memory_limit=limit
    )


def _import_result(
    result: Any,
    output: Path | None,
    rejects: Path | None,
    protection: Any,
    max_rejects: int | None,
    **extra: Any,
) -> StepResult:
    """The import step's result for either engine: files, totals, problems, paths (``extra``:
    the engine and its memory limit); exit 1 over ``--max-rejects``."""
    totals = result.totals
    data = {
        "kind": result.kind,
        "files": [f.as_dict() for f in result.files],
        "totals": totals,
        "problems": result.problem_counts(),
        "output": str(output) if output else None,
        "rejects": str(rejects) if rejects else None,
        "warnings": result.warnings,
        "privacy": protection.to_dict(),
        **extra,
    }
    over = max_rejects is not None and totals["rejected"] > max_rejects
    problem = (
        f"{totals['rejected']} rows rejected, more than --max-rejects {max_rejects}"
        if over
        else None
    )
    return StepResult(
        "import", data, exit_code=int(over), problem=problem, warnings=result.warnings, value=result
    )


def _with_warning(result: StepResult, note: str) -> StepResult:
    result.warnings.append(note)
    if "warnings" in result.data and result.data["warnings"] is not result.warnings:
        result.data["warnings"].append(note)
    return result


def run_template(kind: str, output: PathLike) -> StepResult:
    """Write the Excel import template of ``kind``."""
    from custtool.template import write_template

    path = write_template(kind, output)
    return StepResult("template", {"kind": kind, "output": str(path)}, value=path)


# --------------------------------------------------------------------------- clean
def run_clean(
    customers: PathLike,
    *,
    output: PathLike | None = None,
    keys: str | None = None,
    fuzzy_names: bool = False,
    survivorship: str | None = None,
    channel_priority: str | None = None,
    id_format: str | None = None,
    previous: PathLike | None = None,
    report: PathLike | None = None,
    rules: PathLike | None = None,
    hub_max_names: int | None = None,
    lang: str = "zh",
    mask: bool = True,
    role: str | None = None,
    sheet_rows: int | None = None,
) -> StepResult:
    """Dedupe a customers table; write customers, lineage and the clean report all or nothing.

    The clean report is masked by the one policy unless ``mask=False`` (for roles that allow
    it; ID numbers and bank cards stay masked). Its 待跟进 sheet lists at most ``sheet_rows``
    customers (default: rules/report.yaml) with a note; when cut, all of them are written to
    ``<report>_followup.csv`` beside it. ``value`` is the :class:`custtool.clean.CleanReport`.
    """
    import contextlib

    from custtool.clean import FOLLOWUP_SHEET, dedupe, load_clean_rules
    from custtool.config import sheet_rows_setting
    from custtool.io import atomic_path, read_table, write_table, write_xlsx_sheets
    from custtool.report.masking import check_unmask, get_role, mask_sheets
    from custtool.xlsx import cap_sheets

    written_followup: str | None = None

    if lang not in {"zh", "en"}:
        raise InputError(f"unknown --lang {lang!r}", "use zh or en")
    customers, previous, report = Path(customers), _path(previous), _path(report)
    out = _path(output) or customers.with_name(f"{customers.stem}_clean.parquet")
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(
            f"{out.name}: cannot write {out.suffix!r} files", "use .parquet, .csv or .xlsx"
        )
    if report is not None and report.suffix.lower() != ".xlsx":
        raise InputError(
            f"{report.name}: the clean report is an Excel workbook",
            "name it e.g. clean_report.xlsx",
        )
    lineage_path = out.with_name(f"{out.stem}_lineage{out.suffix}")
    inputs = {customers.resolve()} | ({previous.resolve()} if previous else set())
    for target in (out, lineage_path, report):
        if target is not None and target.resolve() in inputs:
            raise InputError(
                f"{target.name} is an input: custtool never overwrites its inputs",
                "choose another -o / --report",
            )

    check_unmask(get_role(role), mask)
    clean_rules = load_clean_rules(rules)
    table = read_table(customers)
    prev = read_table(previous) if previous is not None else None
    result, lineage, rep = dedupe(
        table,
        keys=keys,
        survivorship=survivorship,
        channel_priority=channel_priority,
        id_format=id_format,
        previous=prev,
        fuzzy_names=fuzzy_names,
        hub_max_names=hub_max_names,
        rules=clean_rules,
    )
    # all or nothing: every output is staged beside its target and renamed only when all are written
    with contextlib.ExitStack() as stack:
        for frame, target in ((result, out), (lineage, lineage_path)):
            tmp = stack.enter_context(atomic_path(target))
            staged = tmp.with_name(tmp.name + target.suffix)
            try:
                write_table(frame, staged)
                os.replace(staged, tmp)
            finally:
                staged.unlink(missing_ok=True)
        if report is not None:
            sheets = mask_sheets(rep.sheets(lang), mask=mask)
            # 待跟进 capped by report.sheet_rows (rules/report.yaml); all of it in a CSV beside
            followup_sheet = FOLLOWUP_SHEET[lang]
            full = report.with_name(f"{report.stem}_followup.csv")
            cap = sheet_rows_setting(sheet_rows)
            if len(sheets.get(followup_sheet, ())) > cap:
                tmp = stack.enter_context(atomic_path(full))
                staged = tmp.with_name(tmp.name + ".csv")
                try:
                    write_table(sheets[followup_sheet], staged)
                    os.replace(staged, tmp)
                finally:
                    staged.unlink(missing_ok=True)
                written_followup = str(full)
            sheets, notes = cap_sheets(sheets, cap, {followup_sheet: full.name}, lang=lang)
            write_xlsx_sheets(sheets, stack.enter_context(atomic_path(report)), notes=notes)

    counts = rep.counts()
    warnings: list[str] = []
    if keys is not None:
        unknown = [k for k in (k.strip() for k in keys.split(",")) if k and k not in counts["keys"]]
        if unknown:
            warnings.append(
                f"--keys {', '.join(unknown)}: no such column; linked on {', '.join(counts['keys'])}"
            )
    paths = {
        "output": str(out),
        "lineage": str(lineage_path),
        "report": str(report) if report else None,
        "followup_csv": written_followup,
    }
    return StepResult("clean", {**counts, **paths}, warnings=warnings, value=rep)


# --------------------------------------------------------------------------- segment
def run_segment(
    customers: PathLike | None = None,
    *,
    orders: PathLike | None = None,
    surveys: PathLike | None = None,
    interactions: PathLike | None = None,
    as_of: str | None = None,
    window: str | None = None,
    config: PathLike | None = None,
    output: PathLike | None = None,
    summary: PathLike | None = None,
    engine: str = "pandas",
    memory_limit: str | int | None = None,
    spark_master: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> StepResult:
    """Segment customers from files; write the table (plus the attributed orders as
    ``<name>_orders.parquet`` and the unmatched orders) and the summary workbook.

    ``engine``: ``pandas`` (in memory), ``duckdb`` (out of core over the orders Parquet,
    within ``memory_limit``, e.g. "1GB") or ``spark`` (Spark SQL on ``spark_master``, default
    ``local[*]``); the DuckDB and Spark engines write the attributed orders themselves.

    ``progress`` (optional) is called with each stage's name as it starts: ``reading``,
    ``segmenting``, then ``writing`` and ``summary`` when those are written.

    ``config`` defaults to the shipped rules/segments.yaml. ``value`` is the
    :class:`custtool.segment.SegmentResult`; ``data`` is its ``to_dict()`` plus ``written``
    and ``seconds``.
    """
    import time

    from custtool.io import read_table, write_table
    from custtool.segment import load_segment_config, segment_customers, write_summary_workbook

    output, summary = _path(output), _path(summary)
    if orders is None and customers is None:
        raise InputError(
            "segment needs an orders table, or a member list with summary columns",
            "pass --orders orders.parquet (from `custtool import`), or a customers table with "
            "最近消费时间, 累计消费次数 and 累计消费金额",
        )
    for path, what in ((output, "-o/--output"), (summary, "--summary")):
        if path is not None and path.suffix.lower() not in (
            {".xlsx"} if what == "--summary" else TABLE_SUFFIXES
        ):
            raise InputError(
                f"{what} {path.name}: unsupported file type",
                "use .xlsx for --summary; .parquet, .csv or .xlsx for -o",
            )
    from custtool.engines import ENGINES, parse_memory_limit

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r} is not an engine", f"use {', '.join(ENGINES)}")
    limit = parse_memory_limit(memory_limit)
    out_of_core = engine != "pandas" and orders is not None
    if out_of_core and Path(orders).suffix.lower() != ".parquet":
        raise InputError(
            f"{Path(orders).name}: --engine {engine} reads the orders as Parquet",
            "import them first: custtool import orders.csv --kind orders -o orders.parquet",
        )
    # the files written beside -o: the attributed orders, the unmatched order lines
    attributed = None if output is None else output.with_name(f"{output.stem}_orders.parquet")
    unmatched = None if output is None else output.with_name(f"{output.stem}_unmatched_orders.csv")
    refuse_overwriting_inputs(
        [customers, orders, surveys, interactions, config],
        [summary, output, attributed, unmatched],
    )
    cfg = load_segment_config(config)  # the shipped rules/segments.yaml, overlaid by ``config``
    stage = progress or (lambda _name: None)
    started = time.perf_counter()
    stage("reading")
    if out_of_core and not Path(orders).exists():
        raise InputError(
            f"{Path(orders).name}: file not found", "check the --orders path", file=str(orders)
        )
    if out_of_core:
        from custtool.io import check_regular_file

        check_regular_file(Path(orders), dataset=True)
    order_df = orders if out_of_core else read_table(orders) if orders is not None else None
    cust_df = read_table(customers) if customers is not None else None
    written: dict[str, str] = {}
    # every output, or none (a --summary that cannot be written leaves no table behind)
    with all_or_nothing() as staged:
        attributed_to = staged(attributed) if out_of_core and attributed is not None else None
        stage("segmenting")
        result = segment_customers(
            order_df,
            cust_df,
            surveys=surveys,
            interactions=interactions,
            as_of=as_of,
            window=window,
            config=cfg,
            engine=engine,
            memory_limit=limit,
            spark_master=spark_master,
            attributed_to=attributed_to,
        )
        rep = result.report
        if output is not None:
            stage("writing")
            write_table(result.customers, staged(output))
            written["output"] = str(output)
            if orders is not None and attributed is not None:
                # the attributed orders (stable customer ids), for report/cards/pivot --orders
                if attributed_to is None:  # the DuckDB/Spark engines wrote them already
                    write_table(result.orders, staged(attributed))
                written["orders"] = str(attributed)
            if rep.rows_unmatched and unmatched is not None:
                write_table(rep.unmatched, staged(unmatched))
                written["unmatched_orders"] = str(unmatched)
        if summary is not None:
            stage("summary")
            write_summary_workbook(result, staged(summary))
            written["summary"] = str(summary)
    data = result.to_dict()
    data["written"] = written
    data["seconds"] = round(time.perf_counter() - started, 3)
    return StepResult("segment", data, value=result)


# --------------------------------------------------------------------------- tag / rules
def tagged_default_output(src: PathLike) -> Path:
    """Where ``custtool tag x.parquet`` writes without ``-o``: ``x_tagged.parquet`` beside it."""
    src = Path(src)
    suffix = (
        src.suffix.lower() if src.suffix.lower() in {".parquet", ".csv", ".xlsx"} else ".parquet"
    )
    return src.with_name(f"{src.stem}_tagged{suffix}")


@dataclass
class Tagging:
    """The library objects of a tag step: the rules, the :class:`TagResult` and the :class:`TagStats`."""

    rules: list[Any]
    result: Any
    stats: Any


def run_tag(
    customers: PathLike,
    *,
    rules: Sequence[PathLike] | None = None,
    manual: PathLike | None = None,
    max_tags: int = 10,
    output: PathLike | None = None,
    stats: PathLike | None = None,
    key: str = "customer_id",
    as_of: str | None = None,
) -> StepResult:
    """Tag a customers table from a file; write the tagged table and (with it) the statistics workbook.

    ``value`` is a :class:`Tagging`.
    """
    from custtool.io import atomic_path, read_table, write_table, write_xlsx_sheets
    from custtool.tags import load_rules, tag_customers, tag_statistics

    stats = _path(stats)
    if stats is not None and stats.suffix.lower() != ".xlsx":
        raise InputError(
            f"{stats.name}: --stats writes an .xlsx workbook", "name it e.g. 标签统计.xlsx"
        )
    refuse_overwriting_inputs(
        [customers, manual, *([rules] if isinstance(rules, str | Path) else rules or [])],
        [_path(output) or tagged_default_output(customers), stats],
    )
    rule_list = load_rules(rules or None)
    df = read_table(customers)
    manual_df = read_table(manual) if manual is not None else None
    result = tag_customers(df, rule_list, max_tags=max_tags, manual=manual_df, key=key, as_of=as_of)
    st = tag_statistics(result.customers, rule_list, skipped=result.skipped["tag"])
    out = _path(output) or tagged_default_output(customers)
    if stats is None:
        write_table(result.customers, out)
    else:  # both or neither: the workbook is renamed into place only after the table is written
        with atomic_path(stats) as tmp:
            write_xlsx_sheets(st.sheets(), tmp)
            write_table(result.customers, out)
    data = {
        "output": str(out),
        "stats": str(stats) if stats else None,
        "customers": st.customers,
        "rules": len(rule_list),
        "rules_applied": result.applied,
        "skipped": result.skipped.to_dict("records"),
        "max_tags": max_tags,
        "tags_dropped": result.dropped_total,
        "customers_capped": result.customers_capped,
        "manual_unmatched": result.manual_unmatched,
        "usage": st.usage[["tag", "level1", "level2", "source", "customers", "share"]].to_dict(
            "records"
        ),
        "unused": st.unused["tag"].tolist(),
        "broad": st.broad["tag"].tolist(),
    }
    return StepResult("tag", data, warnings=result.warnings, value=Tagging(rule_list, result, st))


def run_rules_check(files: Sequence[PathLike]) -> StepResult:
    """Check tag rules files. Exit code 2 with every problem, or ``value`` = the table of tags."""
    from custtool.io import check_regular_file
    from custtool.tags import check_rules, load_rules, rules_table

    for f in files:
        check_regular_file(Path(f))  # a folder or a pipe: said so, not "not found"
        if not Path(f).is_file():
            raise InputError(f"{f}: rules file not found", "check the path", file=str(f))
    problems = check_rules(files)
    table = rules_table(load_rules(files)) if not problems else None
    data = {
        "files": [str(f) for f in files],
        "ok": not problems,
        "problems": [
            {"file": p.file, "line": p.line, "rule": p.rule, "message": p.message, "hint": p.hint}
            for p in problems
        ],
        "tags": [] if table is None else table.drop(columns=["file"]).to_dict("records"),
    }
    problem = f"{len(problems)} problem(s)" if problems else None
    return StepResult(
        "rules check",
        data,
        exit_code=2 if problems else 0,
        problem=problem,
        value=problems or table,
    )


# --------------------------------------------------------------------------- report / pivot / cards
def run_report(
    segmented: PathLike,
    output: PathLike = "report.xlsx",
    *,
    orders: PathLike | None = None,
    surveys: PathLike | None = None,
    rejects: PathLike | None = None,
    clean_report: PathLike | None = None,
    strategies: PathLike | None = None,
    previous: PathLike | None = None,
    role: str | None = None,
    owner: str | None = None,
    mask: bool = True,
    lang: str = "zh",
    roles: PathLike | None = None,
    followups: PathLike | None = None,
    as_of: str | None = None,
    book: PathLike | None = None,
    sheet_rows: int | None = None,
    formats: str | Sequence[str] | None = None,
    split_by: str | None = None,
) -> StepResult:
    """Write the Excel report from files; ``clean_report`` may be the clean JSON or a table.

    ``formats``: which of report.xlsx / .html / .pdf to write beside each other, named by
    ``output``'s stem (default: rules/report.yaml, xlsx). ``split_by="owner"``: also one
    masked workbook per owner in ``owners/`` beside ``output`` (see
    :func:`custtool.report.owners.write_owner_workbooks`); ``data["owners"]`` lists them.
    ``followups``: the follow-up log for the 销售漏斗 sheet (results up to ``as_of``).

    ``book``: the customer book (custtool.duckdb); with two or more runs the report gets
    the 趋势 sheet.

    ``sheet_rows`` caps the tier / class sheets (default: rules/report.yaml). When a sheet is
    capped (or 客户明细 exceeds Excel's row limit) every customer the report shows is written
    beside it as ``<report>_customers.csv``, masked by the same policy, and the notes name it.

    ``orders``: the segment step's attributed orders, or raw orders (attributed to the
    customers first). ``surveys``: the NPS on 概览, as the segment step computes it.

    ``value`` is the :class:`custtool.report.workbook.ReportResult` (None without xlsx).
    """
    import json

    from custtool.config import load_report_settings, report_formats_setting
    from custtool.io import read_table

    check_lang(lang)
    output, clean_report = Path(output), _path(clean_report)
    if output.suffix.lower() not in {".xlsx", ".html", ".pdf"}:
        raise InputError(
            f"{output.name}: the report is report.xlsx (and .html/.pdf beside it)",
            "use -o report.xlsx",
        )
    fmts = report_formats_setting(formats)
    split = split_by if split_by is not None else load_report_settings().split_by
    if split not in (None, "owner"):
        raise InputError(f"cannot split the report by {split!r}", "use --split-by owner")
    if "pdf" in fmts:  # before anything is written: a missing weasyprint is exit 2
        from custtool.report.document import load_weasyprint

        load_weasyprint()
    paths = {f: output.with_suffix(f".{f}") for f in fmts}
    customers = read_table(segmented)
    nps_info: Any = None
    if surveys is not None:
        from custtool.nps import survey_nps

        nps_info = survey_nps(read_table(surveys), customers)
    report_data: Any = None
    if clean_report is not None:
        if clean_report.suffix.lower() == ".json":
            if not clean_report.exists():
                raise InputError(
                    f"{clean_report}: file not found",
                    "check the --clean-report path",
                    file=str(clean_report),
                )
            try:
                report_data = json.loads(clean_report.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise InputError(
                    f"{clean_report.name}: not valid JSON ({exc})",
                    "pass the clean report custtool wrote (JSON or .xlsx)",
                ) from None
        else:
            report_data = read_table(clean_report)
    order_table = _read_optional(orders)
    interactions = read_records(followups, "interactions") if followups is not None else None
    data: dict[str, Any] = {}
    warnings: list[str] = []
    result: Any = None
    if "xlsx" in fmts:
        result, data = _write_report_xlsx(
            customers,
            paths["xlsx"],
            order_table,
            interactions,
            nps_info,
            report_data,
            rejects=rejects,
            strategies=strategies,
            previous=previous,
            role=role,
            owner=owner,
            mask=mask,
            lang=lang,
            roles=roles,
            as_of=as_of,
            book=book,
            sheet_rows=sheet_rows,
        )
        warnings.extend(result.warnings)
    data["formats"] = fmts
    data["files"] = {f: str(p) for f, p in paths.items()}
    doc_options = dict(
        nps=nps_info,
        strategies=strategies,
        role=role,
        owner=owner,
        mask=mask,
        lang=lang,
        roles_path=roles,
        as_of=as_of,
    )
    from custtool.report.document import write_html, write_pdf

    document = None
    if "html" in fmts:
        document = write_html(customers, paths["html"], **doc_options)
        data["html"] = {"path": str(paths["html"])}
    if "pdf" in fmts:
        document = write_pdf(customers, paths["pdf"], **doc_options)
        data["pdf"] = {"path": str(paths["pdf"]), "pages": document.pages}
    if document is not None:  # the figures report.html / report.pdf show (= 概览's)
        data["document"] = {
            "as_of": document.as_of,
            "kpis": document.kpis,
            "segments": document.segments,
        }
    data["owners"] = None
    if split == "owner":
        from custtool.report.owners import FOLDER, write_owner_workbooks

        tasks = None
        if interactions is not None:  # each owner's due follow-ups (rules/followups.yaml)
            from custtool.followups import due_followups, load_followup_rules

            tasks = due_followups(customers, interactions, load_followup_rules(None), as_of=as_of)
        owners = write_owner_workbooks(
            customers,
            output.parent / FOLDER,
            orders=order_table,
            interactions=interactions,
            strategies=strategies,
            lang=lang,
            roles_path=roles,
            as_of=as_of,
            sheet_rows=sheet_rows,
            tasks=tasks,
        )
        data["owners"] = owners.as_dict()
        warnings.extend(owners.warnings)
    return StepResult("report", data, warnings=warnings, value=result)


def _write_report_xlsx(
    customers: Any,
    output: Path,
    order_table: Any,
    interactions: Any,
    nps_info: Any,
    report_data: Any,
    *,
    rejects: PathLike | None,
    strategies: PathLike | None,
    previous: PathLike | None,
    role: str | None,
    owner: str | None,
    mask: bool,
    lang: str,
    roles: PathLike | None,
    as_of: str | None,
    book: PathLike | None,
    sheet_rows: int | None,
) -> tuple[Any, dict[str, Any]]:
    """report.xlsx and, when a sheet is capped, the masked customers CSV beside it."""
    from custtool import labels as L
    from custtool.book import trend
    from custtool.io import write_table
    from custtool.report import write_workbook

    full_list = output.with_name(f"{output.stem}_customers.csv")
    result = write_workbook(
        customers,
        output,
        orders=order_table,
        rejects=_read_optional(rejects),
        clean_report=report_data,
        strategies=strategies,
        previous=_read_optional(previous),
        role=role,
        owner=owner,
        mask=mask,
        lang=lang,
        roles_path=roles,
        nps=nps_info,
        interactions=interactions,
        as_of=as_of,
        trend=trend(book).runs if book is not None else None,
        sheet_rows=sheet_rows,
        full_list=full_list.name,
    )
    data = result.as_dict()
    data["full_list"] = None
    if result.capped or result.sheets.get(L.text("sheet_detail", lang), 0) < result.customers:
        from custtool.report.masking import mask_for_output

        shown = mask_for_output(customers, role=role, mask=mask, owner=owner, roles_path=roles)
        write_table(shown, full_list)
        data["full_list"] = str(full_list)
    return result, data


@dataclass
class PivotTable:
    """A pivot as the step made it: the pivot, its flat form and the header/body text rows."""

    table: Any
    flat: Any
    header: list[str]
    body: list[list[str]]


def run_pivot(
    segmented: PathLike,
    rows: str,
    cols: str | None = None,
    values: str = "customer_id:count",
    *,
    output: PathLike | None = None,
    orders: PathLike | None = None,
    role: str | None = None,
    owner: str | None = None,
    lang: str = "zh",
) -> StepResult:
    """Pivot a customers table under a role's view; write it to ``output`` when given.

    With ``orders`` (attributed or raw) a channel column counts each order in its own
    channel; the totals are always the true totals and ``notes`` says what repeats.
    ``value`` is a :class:`PivotTable`.
    """
    from custtool.io import read_table
    from custtool.report.masking import get_role, mask_for_output
    from custtool.report.pivot import flatten_pivot, parse_values, pivot, pivot_rows, write_pivot

    check_lang(lang)
    role_obj = get_role(role)
    customers = read_table(segmented)
    view = mask_for_output(customers, role=role_obj, owner=owner, mask=True)
    for col, _agg in parse_values(values):
        if col in customers.columns and col not in view.columns:
            raise ConfigError(
                f"role {role_obj.name!r} may not see {col!r}",
                "choose other --values or another role",
            )
    table = pivot(view, rows, cols, values, orders=_read_optional(orders), lang=lang)
    flat = flatten_pivot(table, lang)
    header, body = pivot_rows(flat)
    notes = list(table.attrs.get("notes", []))
    if output is not None:
        write_pivot(flat, output, lang)
        data: dict[str, Any] = {
            "output": str(output),
            "rows": len(flat),
            "columns": header,
            "notes": notes,
        }
    else:
        records = flat.astype(object).where(flat.notna(), None).to_dict("records")
        data = {"columns": header, "rows": records, "notes": notes}
    return StepResult("pivot", data, value=PivotTable(table, flat, header, body))


def run_cards(
    segmented: PathLike,
    *,
    customer: list[str] | None = None,
    segment: list[str] | None = None,
    by: str | None = None,
    top: int = 0,
    fmt: str | None = None,
    output: PathLike = "cards",
    orders: PathLike | None = None,
    strategies: PathLike | None = None,
    role: str | None = None,
    owner: str | None = None,
    mask: bool = True,
    lang: str = "zh",
) -> StepResult:
    """Write profile cards: individual (``customer``/``top``) and group (``segment``/``by``; default one per class)."""
    from custtool.cards import group_cards, individual_cards, write_cards
    from custtool.io import read_table

    check_lang(lang)
    customers = read_table(segmented)
    order_table = _read_optional(orders)
    ids = list(customer or [])
    individual = individual_cards(
        customers,
        ids,
        top=top,
        strategies=strategies,
        orders=order_table,
        role=role,
        owner=owner,
        mask=mask,
        lang=lang,
    )
    group = None
    if segment or by or not (ids or top):
        group = group_cards(
            customers,
            by=by,
            segments=list(segment or []),
            orders=order_table,
            role=role,
            owner=owner,
            lang=lang,
        )
    path = write_cards(individual, group, output, fmt, lang)
    data = {
        "output": str(path),
        "individual": len(individual),
        "group": 0 if group is None else len(group),
    }
    return StepResult("cards", data, value=path)


# --------------------------------------------------------------------------- follow-ups
def read_records(path: PathLike, kind: str) -> Any:
    """A custtool output (Parquet) as it is, or a raw export imported on the fly."""
    from custtool.io import read_table

    if Path(path).suffix.lower() == ".parquet":
        return read_table(path)
    from custtool.ingest import import_files

    return import_files(path, kind=kind).data


@dataclass
class Followups:
    """The library objects of a follow-ups step: the task list, per-owner counts, updated customers."""

    tasks: Any
    per_owner: Any  # owner x state counts, or None without tasks
    updated: Any
    status_changes: int


def run_followups(
    customers: PathLike,
    log: PathLike,
    *,
    rules: PathLike | None = None,
    as_of: str | None = None,
    owner: str | None = None,
    output: PathLike | None = None,
    statuses: PathLike | None = None,
    mask: bool = True,
    role: str | None = None,
) -> StepResult:
    """Due/overdue follow-ups from a log; write the task list and customers with updated status.

    The task list is masked by the one policy (``mask=False`` only for roles that allow it).

    ``value`` is a :class:`Followups`.
    """
    from custtool.followups import (
        TASK_SHEET,
        apply_transitions,
        due_followups,
        load_followup_rules,
        task_table,
    )
    from custtool.io import read_table, write_table
    from custtool.report.masking import check_unmask, get_role, mask_for_output

    output = _path(output)
    refuse_overwriting_inputs([customers, log, rules], [output, statuses])
    role_obj = get_role(role)
    check_unmask(role_obj, mask)  # before anything is read or written, as report and pivot
    cfg = load_followup_rules(rules)
    cust = read_table(customers)
    log_df = read_records(log, "interactions")
    tasks = due_followups(cust, log_df, cfg, as_of=as_of, owner=owner)
    updated = apply_transitions(cust, log_df, cfg)
    changed = int((updated["status_reason"] != "").sum())
    with all_or_nothing() as staged:  # the task list and the statuses, or neither
        if output:
            shown = mask_for_output(tasks, role=role_obj, mask=mask, owner=owner)
            if output.suffix.lower() == ".xlsx":
                write_table(task_table(shown), staged(output), sheet_name=TASK_SHEET)
            else:
                write_table(shown, staged(output))
        if statuses:
            write_table(updated, staged(statuses))
    per_owner = (
        tasks.groupby("owner")["state"].value_counts().unstack(fill_value=0) if len(tasks) else None
    )
    data = {
        "tasks": len(tasks),
        "overdue": int((tasks["state"] == "逾期").sum()),
        "due_soon": int((tasks["state"] == "即将到期").sum()),
        "per_owner": {} if per_owner is None else per_owner.astype(int).to_dict(orient="index"),
        "status_changes": changed,
        "output": str(output) if output else None,
    }
    return StepResult("followups", data, value=Followups(tasks, per_owner, updated, changed))


# --------------------------------------------------------------------------- key / reveal (issue 14)
def run_key_new() -> StepResult:
    """A fresh key for ``CUSTTOOL_KEY`` and its id (the key is in ``value``, not ``data``,
    so ``to_dict()`` never carries it; the CLI prints it on stdout only)."""
    from custtool.crypto import new_key, parse_key

    text = new_key()
    return StepResult("key new", {"key_id": parse_key(text).id, "env": "CUSTTOOL_KEY"}, value=text)


def run_reveal(
    file: PathLike,
    *,
    output: PathLike,
    role: str | None = None,
    roles: PathLike | None = None,
) -> StepResult:
    """Decrypt the sensitive columns of a table custtool wrote into ``output`` (admin only).

    The key comes from ``CUSTTOOL_KEY``; missing, wrong or a changed file are clear errors.
    ``output`` holds clear ID and card numbers: it is created owner-only (0600).
    """
    from custtool.crypto import is_encrypted, load_key, reveal_frame
    from custtool.io import read_table, write_table
    from custtool.report.masking import get_role

    who = get_role(role, roles)
    if not who.allow_unmask:
        raise ConfigError(
            f"role {who.name!r} may not reveal encrypted columns",
            "reveal is for the admin role (--role admin) with CUSTTOOL_KEY set",
        )
    src, out = Path(file), Path(output)
    refuse_overwriting_inputs([src], [out])  # the clear table over the encrypted one
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"{out}: unknown output type", "use .csv, .xlsx or .parquet")
    if not src.exists():
        raise InputError(f"{src}: file not found", "check the path", file=str(src))
    df = read_table(src)
    columns = [
        str(c)
        for c in df.columns
        if (df[c].dtype == object or str(df[c].dtype) in ("str", "string"))
        and is_encrypted(df[c]).any()
    ]
    key = load_key(required=bool(columns))  # a wrong key is an error even with nothing to do
    clear = reveal_frame(df, key, where=src.name) if key is not None else df
    write_table(clear, out, private=True)
    data = {
        "file": str(src),
        "output": str(out),
        "columns": columns,
        "key_id": key.id if key else None,
    }
    return StepResult("reveal", data, value=clear)


def run_key_rotate(folder: PathLike, *, old_env: str, new_env: str) -> StepResult:
    """Re-encrypt every table (.parquet/.csv/.tsv) under ``folder`` from the key in
    environment variable ``old_env`` to the one in ``new_env``; a run folder's manifest gets
    the new key id. Every file is checked with the old key before any is rewritten, and
    each is replaced atomically."""
    import json

    import pandas as pd

    from custtool.crypto import is_encrypted, load_key, rotate_frame
    from custtool.io import read_table, write_table

    root = Path(folder)
    if not root.is_dir():
        raise InputError(
            f"{root}: folder not found", "name a run folder, e.g. out/2026-10-31", file=str(root)
        )
    tables = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".parquet", ".csv", ".tsv"})
    frames = [
        (p, pd.read_parquet(p) if p.suffix.lower() == ".parquet" else read_table(p)) for p in tables
    ]
    encrypted = any(
        is_encrypted(df[c]).any()
        for _, df in frames
        for c in df.columns
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c])
    )
    # keys are needed (and checked) when there is something to rotate
    old = load_key(old_env, required=encrypted)
    new = load_key(new_env, required=encrypted)
    rotated = []
    for p, df in frames:  # all decrypted first: a wrong old key changes nothing
        if old is None or new is None:
            break
        new_df, cells = rotate_frame(df, old, new, where=p.name)
        if cells:
            rotated.append((p, new_df, cells))
    for p, new_df, _ in rotated:
        write_table(new_df, p)
    manifest = root / "manifest.json"
    if manifest.exists() and rotated and new is not None:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        if isinstance(m.get("privacy"), dict):
            m["privacy"]["key_id"] = new.id
            manifest.write_text(json.dumps(m, ensure_ascii=False, indent=2), encoding="utf-8")
    data = {
        "folder": str(root),
        "old_key_id": old.id if old else None,
        "new_key_id": new.id if new else None,
        "files": [{"file": str(p.relative_to(root)), "cells": n} for p, _, n in rotated],
    }
    return StepResult("key rotate", data)


# --------------------------------------------------------------------------- funnel
def run_funnel(
    customers: PathLike,
    *,
    followups: PathLike | None = None,
    as_of: str | None = None,
    rules: PathLike | None = None,
    output: PathLike | None = None,
) -> StepResult:
    """The sales funnel (潜在 → 意向 → 成交, 流失 beside it) of a customers table, overall, per
    owner and per channel; ``output`` (.xlsx/.csv/.parquet) gets the funnel table.

    ``value`` is a :class:`custtool.funnel.FunnelResult`; ``data`` its ``to_dict()`` plus
    ``written``.
    """
    from custtool.config import funnel_settings
    from custtool.funnel import sales_funnel
    from custtool.io import read_table, write_table

    output = _path(output)
    if output is not None and output.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(
            f"-o {output.name}: unsupported file type", "use .xlsx, .csv or .parquet for -o"
        )
    cfg = funnel_settings(rules)
    refuse_overwriting_inputs([customers, followups, rules], [output])
    cust = read_table(customers)
    log = read_records(followups, "interactions") if followups is not None else None
    result = sales_funnel(cust, log, as_of=as_of, settings=cfg)
    data = result.to_dict()
    data["written"] = {}
    if output is not None:
        from custtool.labels import label

        table = result.table.rename(columns={c: label(c) for c in result.table.columns})
        write_table(
            table, output, **({"sheet_name": "销售漏斗"} if output.suffix == ".xlsx" else {})
        )
        data["written"]["output"] = str(output)
    return StepResult("funnel", data, value=result)


# --------------------------------------------------------------------------- the customer book (issue 16)
def _book(book: PathLike | None) -> Path:
    from custtool.book import BOOK_NAME

    return Path(book) if book is not None else Path("out") / BOOK_NAME


def run_trend(book: PathLike | None = None, *, output: PathLike | None = None) -> StepResult:
    """KPIs per run of the book (default ``out/custtool.duckdb``); ``output`` (.xlsx or
    .csv) gets one row per run. ``data`` is ``{"runs": [{"as_of": …, "customers": …}]}``."""
    from custtool.book import trend
    from custtool.io import write_table

    result = trend(_book(book))
    out = _path(output)
    if out is not None:
        if out.suffix.lower() not in {".xlsx", ".csv"}:
            raise InputError(f"{out.name}: unsupported file type", "use -o trend.xlsx or .csv")
        write_table(result.frame(), out)
    return StepResult("trend", result.to_dict(), value=result)


def run_compare(
    a: str, b: str, *, book: PathLike | None = None, output: PathLike | None = None
) -> StepResult:
    """Migration between the runs as of ``a`` and ``b``: matrices per rfm_class, tier,
    lifecycle and status, moves up/down, new and lost customers. ``output`` (.csv, .xlsx
    or .parquet) gets the list of who moved (customer_id, dimension, before, now,
    direction up/down/moved)."""
    from custtool.book import compare
    from custtool.io import write_table

    out = _path(output)
    if out is not None and out.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(
            f"{out.name}: unsupported file type", "use -o moves.csv, .xlsx or .parquet"
        )
    result = compare(_book(book), a, b)
    data = result.to_dict()
    if out is not None:
        write_table(result.moves, out)
        data["written"] = str(out)
    return StepResult("compare", data, value=result)


def run_query(
    sql: str,
    *,
    book: PathLike | None = None,
    output: PathLike | None = None,
    mask: bool = True,
    role: str | None = None,
) -> StepResult:
    """A SQL query on the book, read-only; ``output`` (.csv, .xlsx or .parquet) gets the
    result. ``data`` is ``{"columns": [...], "rows": [{…}]}``. The result is an export:
    masked by the one masking policy (``mask=False`` only for a ``role`` that may unmask;
    ID numbers and bank cards stay masked)."""
    from custtool.book import query
    from custtool.io import write_table
    from custtool.report.masking import check_unmask, get_role, mask_frame

    check_unmask(get_role(role), mask)  # before the book is opened
    result = query(_book(book), sql)
    result.frame = mask_frame(result.frame, mask=mask)
    out = _path(output)
    if out is not None:
        if out.suffix.lower() not in TABLE_SUFFIXES:
            raise InputError(
                f"{out.name}: unsupported file type", "use -o out.csv, .xlsx or .parquet"
            )
        write_table(result.frame, out)
    return StepResult("query", result.to_dict(), value=result)


def run_book_import(
    out: PathLike, *, book: PathLike | None = None, wait: float | None = None
) -> StepResult:
    """Record the run folders of ``out`` in the book (default ``out/custtool.duckdb``)."""
    from custtool.book import DEFAULT_WAIT, import_runs

    done = import_runs(out, book, wait=DEFAULT_WAIT if wait is None else wait)
    target = str(done[0].path) if done else None
    return StepResult(
        "book import", {"book": target, "runs": [d.to_dict() for d in done]}, value=done
    )


# --------------------------------------------------------------------------- e-mail (issue 17)
def run_send(
    run_dir: PathLike,
    *,
    config: PathLike | None = None,
    dry_run: bool = False,
    force: bool = False,
    **send_options: Any,
) -> StepResult:
    """Mail a finished run folder to the subscriptions of ``config`` (default: the pipeline
    file recorded in the run's manifest.json). ``dry_run`` lists the mails and sends nothing;
    ``force`` re-sends what was already sent. Exit code 1 when a mail could not be sent (the
    manifest records it); problems found before sending are ConfigError (exit 2)."""
    from custtool.deliver import load_deliver, read_manifest, send_run

    folder = Path(run_dir)
    if config is None:
        recorded = read_manifest(folder).get("pipeline")
        if not recorded:
            raise InputError(
                f"{folder}: the manifest names no pipeline file", "pass --config pipeline.yaml"
            )
        config = recorded
    deliver, name = load_deliver(config)
    result = send_run(
        folder,
        deliver,
        name=name,
        dry_run=dry_run,
        force=force,
        config_file=str(config),
        **send_options,
    )
    return StepResult(
        "send", result.to_dict(), exit_code=result.exit_code, problem=result.problem, value=result
    )
