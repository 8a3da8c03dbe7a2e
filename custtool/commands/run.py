"""The `run` and `send` commands (pipeline.yaml, e-mail).

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from custtool.commands.options import AsOfOpt, JsonOpt, QuietOpt, SensitiveOpt
from custtool.commands.render import emit_json, finish, info, print_table, progress, warn


# --------------------------------------------------------------------------- run / send
# (section: run — issue 7)
def run(
    pipeline: Annotated[
        Path, typer.Argument(help="The pipeline YAML (see examples/pipeline.yaml).")
    ],
    as_of: AsOfOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for run folders (default: the pipeline's out:)."),
    ] = None,
    fail_on_rejects: Annotated[
        int | None,
        typer.Option(
            "--fail-on-rejects",
            min=0,  # as fail_on_rejects: in the pipeline file (ge=0)
            help="Exit 1 when more input rows than this are rejected.",
        ),
    ] = None,
    sensitive: SensitiveOpt = None,
    no_send: Annotated[
        bool,
        typer.Option("--no-send", help="Do not mail the pipeline's deliver: subscriptions."),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole job: import → clean → segment → tag → follow-ups → report → cards.

    Everything goes into one folder per as-of date (out/2026-10-31/), written atomically,
    with manifest.json recording inputs, hashes, row counts, outputs and timings. Made for
    cron: no prompts, plain output when not a terminal, exit 0 ok / 1 too many rejects /
    2 bad input or config. With a deliver: section the due subscriptions are mailed after a
    successful run (not after one over --fail-on-rejects); a mail that cannot be sent is
    exit 1 with the run folder complete (see `custtool send`).

    Examples:

      $ custtool run examples/pipeline.yaml

      $ custtool run pipeline.yaml --as-of 2026-10-31 --out /data/custtool --quiet

      $ custtool run pipeline.yaml --fail-on-rejects 0 --json

      $ custtool run pipeline.yaml --no-send
    """
    from custtool.pipeline import load_pipeline, run_pipeline

    pl = load_pipeline(pipeline)
    with progress(quiet or json_out) as bar:
        task = bar.add_task("pipeline", total=7)

        def step(name: str) -> None:
            bar.update(task, description=name, advance=1)

        result = run_pipeline(
            pl,
            as_of=as_of,
            out=out,
            fail_on_rejects=fail_on_rejects,
            progress=step,
            sensitive=sensitive,
            send=not no_send,
        )
    m = result.manifest
    if json_out:
        emit_json(result.to_dict())
    else:
        rows = []
        for rec in m["steps"]:
            counts = rec.get("rows") or {}
            if rec["step"] == "import":
                text = "; ".join(
                    f"{k}: {v['accepted']:,}/{v['rows_read']:,} accepted, {v['rejected']:,} rejected, {v['skipped']:,} skipped"
                    for k, v in counts.items()
                )
            else:
                text = ", ".join(
                    f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in counts.items()
                )
            rows.append([rec["step"], f"{rec['seconds']:.1f}s", text])
        print_table(
            f"custtool run {pl.name} — as of {m['as_of']}", ["step", "time", "rows"], rows, quiet
        )
        for w in m["warnings"]:
            warn(w, quiet)
        # the one-line result cron mails show
        status = "REJECTS OVER LIMIT" if result.over_reject_limit else "OK"
        typer.echo(
            f"custtool run: {status} as_of={m['as_of']} customers={m['rows']['segment']['customers']} "
            f"rejected={m['rejected_rows']} report={result.folder / 'report.xlsx'}"
            + (
                f" mailed={result.delivery.count('sent')} mail_failed={result.delivery.count('failed')}"
                if result.delivery is not None
                else ""
            )
        )
        if result.over_reject_limit and pl.deliver is not None and not no_send:
            info(
                f"rejects over the limit; check rejects.csv, then `custtool send {result.folder}`",
                quiet,
                label="Not mailed:",
            )
        if result.delivery is not None:
            _print_delivery(result.delivery.to_dict(), quiet)
            if result.delivery.problem:
                info(str(result.delivery.problem), style="red")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _print_delivery(d: dict[str, Any], quiet: bool = False) -> None:
    """The mails of a delivery, one row each, on stderr."""
    rows = [
        [
            m["status"],
            m["subscription"],
            m["to"],
            m["subject"],
            ", ".join(f"{a['name']} ({a['bytes']:,} B)" for a in m["attachments"]),
        ]
        for m in d["mails"]
    ]
    rows += [[f"not due ({n['cycle']})", n["subscription"], "", "", ""] for n in d["not_due"]]
    what = "e-mail (dry run: nothing sent)" if d["dry_run"] else "e-mail"
    print_table(
        f"{what} — as of {d['as_of']}",
        ["status", "subscription", "to", "subject", "attachments"],
        rows,
        quiet,
    )


def send_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder, e.g. out/2026-10-31.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="The pipeline file with deliver: (default: the run's pipeline)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List recipients, subjects and files; send nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send again what was already sent from this run.")
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Mail a finished run folder to the pipeline's deliver: subscriptions (SMTP).

    The password comes from the environment variable named by password_env only. What was
    sent (to whom, when, which files with their SHA-256) and what failed is recorded in the
    run's manifest.json; what already went out is skipped unless --force. Exit 0 sent,
    1 a mail could not be sent (the run folder is intact), 2 bad folder or config, or a
    subscription that may not have the files (nothing sent).

    Examples:

      $ custtool send out/2026-10-31 --config pipeline.yaml --dry-run

      $ custtool send out/2026-10-31 --config pipeline.yaml

      $ custtool send out/2026-10-31 --force --json
    """
    from custtool.steps import run_send

    result = run_send(run_dir, config=config, dry_run=dry_run, force=force)
    if json_out:
        emit_json(result.to_dict())
    else:
        _print_delivery(result.data, quiet)
        d = result.data
        typer.echo(
            f"custtool send: {'DRY RUN ' if d['dry_run'] else ''}as_of={d['as_of']} "
            f"sent={d['sent']} failed={d['failed']} skipped={d['skipped']} planned={d['planned']}"
        )
    finish(result)  # the failure line even with --quiet: cron mails stderr
