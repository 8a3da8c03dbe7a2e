"""Reading the YAML files users and the shipped rules/ give: one place, one set of errors.

Always ``yaml.safe_load`` (SPEC H1): a file with Python tags (``!!python/object``) is
refused with a clear ConfigError rather than run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from custtool.errors import ConfigError


def load_yaml(path: str | os.PathLike[str], *, what: str = "config file", hint: str | None = None, empty: Any = None) -> Any:
    """The data of a YAML file, or a ConfigError naming the file (and line) and how to fix it.

    ``empty`` is returned for an empty file (default None).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found", hint or "check the path")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{p.name}: not UTF-8 text", "save the file as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{p.name}{where}: YAML tags such as !!python/… are not allowed", "remove the tag; rule files hold plain data"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError(f"{p.name}{where}: not valid YAML ({problem})", "check indentation, colons and quotes") from None
    return empty if data is None else data
