"""Atomic output (SPEC G2): a file appears complete under its name, or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            os.replace(tmp_path, target)
        except OSError as exc:
            mine = {None, str(tmp_path), str(target), str(target.parent)}
            if exc.filename is not None and str(exc.filename) not in mine:
                raise  # another file's problem (an input read inside the block)
            raise _cannot_write(target, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _cannot_write(target: Path, exc: OSError) -> Exception:
    """The one-line error for an output that cannot be written (exit 2, not a bug)."""
    from custtool.errors import environment_error

    err = environment_error(exc, writing=True)
    err.message = f"{target}: cannot write ({exc.strerror or type(exc).__name__})"
    err.args = (err.message,)
    err.file = str(target)
    return err


__all__ = ["atomic_path"]
