"""The `key new`, `key rotate` and `reveal` commands (sensitive columns at rest).

Registered on the typer app by :mod:`custtool.cli`; each command calls one function of
:mod:`custtool.steps` and renders its result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custtool.commands.options import JsonOpt, QuietOpt, RoleOpt
from custtool.commands.render import emit_json, info

# --------------------------------------------------------------------------- key / reveal
# (section: privacy — issue 14)


def key_new_command(json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Print a fresh key for CUSTTOOL_KEY (stdout only; custtool never stores it).

    Examples:

      $ custtool key new --quiet > /secure/custtool.key

      $ custtool key new --json

    Then: export CUSTTOOL_KEY=$(cat /secure/custtool.key)
    """
    from custtool.steps import run_key_new

    result = run_key_new()
    if json_out:
        emit_json(result.to_dict())  # the key id only
        return
    typer.echo(result.value)
    info(
        f"Key id {result.data['key_id']}. Keep the key in a secret store: without it "
        "encrypted columns cannot be read.",
        quiet,
    )


def key_rotate_command(
    folder: Annotated[Path, typer.Argument(help="A run folder (or any folder of tables).")],
    old_env: Annotated[
        str, typer.Option("--old-env", help="Environment variable holding the old key.")
    ] = "CUSTTOOL_KEY",
    new_env: Annotated[
        str, typer.Option("--new-env", help="Environment variable holding the new key.")
    ] = "CUSTTOOL_NEW_KEY",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-encrypt the tables of a run folder from the old key to the new one.

    Examples:

      $ custtool key rotate out/2026-10-31 --old-env CUSTTOOL_KEY --new-env CUSTTOOL_NEW_KEY

      $ custtool key rotate out/2026-10-31 --json
    """
    from custtool.steps import run_key_rotate

    result = run_key_rotate(folder, old_env=old_env, new_env=new_env)
    if json_out:
        emit_json(result.to_dict())
        return
    d = result.data
    for f in d["files"]:
        info(f"{f['file']}: {f['cells']} cells re-encrypted", quiet)
    if d["files"]:
        info(
            f"Key id {d['old_key_id']} → {d['new_key_id']}. Set CUSTTOOL_KEY to the new key.", quiet
        )
    else:
        info("Nothing encrypted to rotate.", quiet)


def reveal_command(
    file: Annotated[Path, typer.Argument(help="A table custtool wrote (.parquet/.csv/.xlsx).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the clear table (0600).")
    ],
    role: RoleOpt = None,
    roles: Annotated[
        Path | None, typer.Option("--roles", help="Your role profiles (YAML).")
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decrypt the encrypted columns of a table with CUSTTOOL_KEY (admin only).

    Examples:

      $ custtool reveal out/2026-10-31/customers.parquet -o customers_clear.csv

      $ custtool reveal customers.parquet -o clear.xlsx --role admin --json
    """
    from custtool.steps import run_reveal

    result = run_reveal(file, output=output, role=role, roles=roles)
    if json_out:
        emit_json(result.to_dict())
        return
    cols = ", ".join(result.data["columns"]) or "none"
    info(f"Decrypted columns: {cols}. Wrote {output} (owner-only; delete it when done).", quiet)
