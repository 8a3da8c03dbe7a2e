"""The `custtool` command line: the typer app, the error edge, the command tree.

The commands live in :mod:`custtool.commands` (one module per group: ``importing``, ``clean``,
``segment``, ``tag``, ``report``, ``run``, ``followups``, ``keys``, ``book``) and are
registered at the end of this module, in the order ``custtool --help`` lists them. The
options several commands share are in :mod:`custtool.commands.options`, the rendering
(``console`` on stderr, ``emit_json``, ``print_table``, ``info``, ``finish``, ``progress``)
in :mod:`custtool.commands.render`; both are importable from here too. The command modules
do not import this module, so there is no import circle.

Every command calls one function of :mod:`custtool.steps` (``run`` calls
:func:`custtool.pipeline.run_pipeline`); it returns a result whose ``to_dict()`` is what
``--json`` prints and whose ``exit_code`` is what the command exits with. Policy (output
checks, staging, defaults, optional inputs) lives in the library, not here.

Heavy libraries (pandas, pandera, openpyxl) are imported inside the commands so that
`--help` stays fast. Errors from the library (:class:`custtool.errors.CusttoolError`)
are caught once, in :class:`_Group.invoke`: one red line and a hint on stderr, exit 2;
with ``--json`` stdout still gets one object, ``{"error": {...}}``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from custtool import __version__
from custtool.commands import book, clean, followups, importing, keys, report, run, segment, tag
from custtool.commands.options import AsOfOpt, JsonOpt, OutOpt, QuietOpt, RoleOpt, SensitiveOpt
from custtool.commands.render import (
    console,
    emit_json,
    finish,
    info,
    print_table,
    progress,
    stage_progress,
    stdout,
)
from custtool.errors import CusttoolError

__all__ = [
    "AsOfOpt",
    "JsonOpt",
    "OutOpt",
    "QuietOpt",
    "RoleOpt",
    "SensitiveOpt",
    "app",
    "console",
    "emit_json",
    "finish",
    "info",
    "main",
    "print_table",
    "progress",
    "stage_progress",
    "stdout",
]

try:  # typer ≥ 0.20 vendors click; older versions use the click package
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException as _ClickException  # type: ignore[no-redef]


class _Group(TyperGroup):
    """Typer group with the error edge: a CusttoolError becomes one line (plus hint) on stderr
    and exit 2; with --json, stdout still gets one JSON object, ``{"error": {...}}``."""

    def invoke(self, ctx: Any) -> Any:
        wants_json = "--json" in [*ctx._protected_args, *ctx.args]
        try:
            try:
                return super().invoke(ctx)
            except OSError as exc:  # the environment, not a bug: permission, disk, missing path
                if isinstance(exc, BrokenPipeError):
                    raise
                from custtool.errors import environment_error

                raise environment_error(exc) from exc
            except MemoryError as exc:
                raise CusttoolError(
                    "out of memory",
                    "the input is too large for this machine: split it, or run on a larger one",
                ) from exc
        except CusttoolError as exc:
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()  # plain traceback, no locals (they may hold personal data)
            if wants_json:
                _emit_error(
                    type(exc).__name__,
                    exc.message,
                    exc.hint,
                    exc.exit_code,
                    getattr(exc, "file", None),
                    getattr(exc, "row", None),
                )
            from rich.markup import escape

            console.print(f"[bold red]Error:[/] {escape(exc.message)}", soft_wrap=True)
            if exc.hint:
                console.print(f"[yellow]Hint:[/] {escape(exc.hint)}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except _ClickException as exc:  # usage errors: one line plus a hint, on stderr
            if wants_json:
                _emit_error("UsageError", exc.format_message(), _usage_hint(exc), exc.exit_code)
            console.print(f"Error: {exc.format_message()}", soft_wrap=True, markup=False)
            console.print(f"Hint: {_usage_hint(exc)}", soft_wrap=True, markup=False)
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:  # `custtool … | head`: the reader left; not an error of ours
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes at exit
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except (
            Exception
        ) as exc:  # a bug, not bad input: exit 3 so cron can tell it from 1 (rejects)
            if (ctx.obj or {}).get("debug"):
                traceback.print_exc()
            hint = "nothing was written; run again with --debug for the traceback and report it"
            from rich.markup import escape

            from custtool.report.masking import mask_message

            # the library's text may quote a cell: its phones, e-mails and ID numbers masked
            text = f"{type(exc).__name__}: {mask_message(str(exc)[:200])}"
            if wants_json:
                _emit_error("InternalError", text, hint, 3)
            console.print(f"[bold red]Internal error:[/] {escape(text)}", soft_wrap=True)
            console.print(f"[yellow]Hint:[/] {hint}", soft_wrap=True)
            raise typer.Exit(3) from None


def _usage_hint(exc: Any) -> str:
    """The hint under a usage error: the help of the command that was being called."""
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "custtool"
    return f"see `{path} --help`"


def _emit_error(
    kind: str,
    message: str,
    hint: str | None,
    exit_code: int,
    file: str | None = None,
    row: int | None = None,
) -> None:
    """The --json form of an error: one object on stdout, so a pipe always gets JSON."""
    emit_json(
        {
            "error": {
                "code": exit_code,
                "type": kind,
                "message": message,
                "hint": hint,
                "file": file,
                "row": row,
                "exit_code": exit_code,
            }
        }
    )


app = typer.Typer(
    cls=_Group,
    name="custtool",
    help="Turn customer spreadsheets (CRM/shop exports, member lists, orders, follow-ups, "
    "surveys) into clean profiles, tags, RFM/LTV/NPS segments and Excel reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"custtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """custtool: customer spreadsheets in, profiles, segments and reports out."""
    ctx.obj = {"debug": debug}


# --------------------------------------------------------------------------- the commands
# Registered here, in the order `custtool --help` lists them; each lives in custtool/commands/.
app.command("import")(importing.import_)
app.command("template")(importing.template)
app.command("clean")(clean.clean)
app.command("segment")(segment.segment)
app.command("tag")(tag.tag_command)

rules_app = typer.Typer(
    cls=_Group,
    help="Check rule files (tags).\n\nExamples:\n\n  $ custtool rules check rules/tags.yaml\n\n  $ custtool rules check my_tags.yaml --json",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(rules_app, name="rules")
rules_app.command("check")(tag.rules_check_command)

app.command("report")(report.report_cmd)
app.command("pivot")(report.pivot_cmd)
app.command("cards")(report.cards_cmd)
app.command("run")(run.run)
app.command("send")(run.send_cmd)
app.command("followups")(followups.followups)

key_app = typer.Typer(
    cls=_Group,
    help="Keys for sensitive columns at rest (CUSTTOOL_KEY).\n\nExamples:\n\n  $ custtool key new --quiet > /secure/custtool.key\n\n  $ custtool key rotate out/2026-10-31 --old-env CUSTTOOL_KEY --new-env CUSTTOOL_NEW_KEY",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(key_app, name="key")
key_app.command("new")(keys.key_new_command)
key_app.command("rotate")(keys.key_rotate_command)

app.command("reveal")(keys.reveal_command)
app.command("funnel")(followups.funnel)
app.command("trend")(book.trend_cmd)
app.command("compare")(book.compare_cmd)
app.command("query")(book.query_cmd)

book_app = typer.Typer(
    cls=_Group,
    help="The customer book (custtool.duckdb): import earlier run folders.\n\nExamples:\n\n  $ custtool book import out/\n\n  $ custtool book import /data/custtool --wait 120 --json",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(book_app, name="book")
book_app.command("import")(book.book_import_cmd)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
