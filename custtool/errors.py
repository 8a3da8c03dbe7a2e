"""The small exception hierarchy of custtool.

Library code raises these; the CLI catches :class:`CusttoolError` once, prints one
line plus the hint on stderr and exits with code 2. Messages name the file, sheet,
row, column or rule, never a whole customer row.
"""

from __future__ import annotations


class CusttoolError(Exception):
    """Base class: something the user can fix. ``hint`` says how."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        file: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.file = file  # the file the problem is in, when there is one (--json: "file")
        self.row = row  # the row a person sees in that file, when there is one

    def __str__(self) -> str:
        return self.message


class InputError(CusttoolError):
    """An input file cannot be read: missing, corrupt, wrong encoding, no header, missing column."""


class ConfigError(CusttoolError):
    """A configuration or YAML file is invalid."""


class RuleError(ConfigError):
    """A tag/segment rule is invalid (syntax, unknown field, unsafe expression)."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        rule: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        where = ", ".join(
            p
            for p in (file and f"{file}" + (f":{line}" if line else ""), rule and f"rule {rule!r}")
            if p
        )
        super().__init__(f"{where}: {message}" if where else message, hint, file=file, row=line)
        self.rule = rule
        self.line = line


class OutputError(CusttoolError):
    """An output cannot be written: read-only folder, missing drive, full disk, permission."""


def environment_error(exc: OSError, *, writing: bool | None = None) -> CusttoolError:
    """The :class:`CusttoolError` for an operating-system error (permission, missing folder,
    full disk, a folder where a file should be): names the file and says what to do."""
    import errno

    name = exc.filename if exc.filename is not None else None
    what = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        hint = "free some disk space (or write to another disk) and run again"
    elif isinstance(exc, PermissionError):
        hint = "check the file and folder permissions, or choose another path"
    elif isinstance(exc, FileNotFoundError):
        hint = "check the path: the file or its folder does not exist"
    elif isinstance(exc, IsADirectoryError):
        hint = "name a file, not a folder"
    else:
        hint = "check the path, the permissions and the free disk space"
    verb = {True: "cannot write", False: "cannot read", None: "cannot use"}[writing]
    where = f"{name}: " if name else ""
    cls = OutputError if writing else InputError
    return cls(f"{where}{verb} ({what})", hint, file=None if name is None else str(name))
