"""Options shared by several commands (typer ``Annotated`` types)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (for machines).")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
OutOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Output file (.parquet, .csv or .xlsx).")
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="As-of date YYYY-MM-DD (default: the latest order date)."),
]
SensitiveOpt = Annotated[
    str | None,
    typer.Option(
        "--sensitive",
        help="ID numbers, bank cards and fields marked sensitive: encrypt (default, needs "
        "CUSTTOOL_KEY), drop, mask, or clear (kept readable; stated in the output).",
    ),
]
NoMaskOpt = Annotated[
    bool,
    typer.Option(
        "--no-mask",
        help="Show names, phones and emails unmasked (admin only; ID numbers and bank cards stay masked).",
    ),
]
RoleOpt = Annotated[
    str | None,
    typer.Option(
        "--role",
        help="Role profile from rules/roles.yaml: admin (default), analyst, sales, service.",
    ),
]
