"""The small exception hierarchy of custtool.

Library code raises these; the CLI catches :class:`CusttoolError` once, prints one
line plus the hint on stderr and exits with code 2. Messages name the file, sheet,
row, column or rule, never a whole customer row.
"""

from __future__ import annotations


class CusttoolError(Exception):
    """Base class: something the user can fix. ``hint`` says how."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

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
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.rule = rule
        self.file = file
        self.line = line
