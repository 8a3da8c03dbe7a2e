"""Atomic output (SPEC G2): a file appears complete under its name, or not at all."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def _host() -> str:
    import socket

    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def temp_prefix(stem: str) -> str:
    """The start of a temporary name: ``stem``, then this host and process id — so that a
    run killed before it could clean up (SIGKILL, the OOM killer, a power cut) leaves names
    the next run can tell are nobody's (:func:`sweep_leftovers`)."""
    return f"{stem}{_host()}-{os.getpid()}."


def sweep_leftovers(folder: str | os.PathLike[str], stem: str) -> list[Path]:
    """Remove the temporary files and folders named by :func:`temp_prefix` with ``stem`` in
    ``folder`` whose process no longer runs on this host (another host's, or a live
    process's, are left alone). Returns what was removed; never raises."""
    import glob
    import shutil

    removed: list[Path] = []
    host = _host()
    try:
        entries = list(Path(folder).glob(glob.escape(f"{stem}{host}-") + "*"))
    except OSError:
        return removed
    for entry in entries:
        pid_text = entry.name[len(stem) + len(host) + 1 :].split(".", 1)[0]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (this process does; no way to tell: yes)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or no way to tell: alive
    return True


def _temp_beside(target: Path, suffix: str) -> Path:
    """An empty owner-only temporary file beside ``target`` (its folder made, a killed run's
    leftovers for the same target swept first), named by :func:`temp_prefix`."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(target.parent, f".{target.name}.")
        fd, tmp = tempfile.mkstemp(
            prefix=temp_prefix(f".{target.name}."), suffix=suffix, dir=target.parent
        )
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    The temporary file is owner-only (0600) while written; the finished file gets the usual
    permissions, or stays 0600 when ``private`` (a file holding clear sensitive values)."""
    target = Path(path)
    tmp_path = _temp_beside(target, ".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        try:
            yield tmp_path  # owner only (mkstemp's 0600) while unfinished
            if not private:
                os.chmod(tmp_path, 0o666 & ~umask)  # the finished output is an ordinary file
            os.replace(tmp_path, target)
        except OSError as exc:
            mine = {None, str(tmp_path), str(target), str(target.parent)}
            if exc.filename is not None and str(exc.filename) not in mine:
                raise  # another file's problem (an input read inside the block)
            raise _cannot_write(target, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def all_or_nothing() -> Iterator[Callable[[str | os.PathLike[str]], Path]]:
    """The outputs of one step written all or nothing (SPEC G2 for a step with several files).

    Yields ``stage(target)``: a temporary path beside ``target`` ending in its suffix (so a
    writer picks the format from it). When the block ends without error every staged file is
    renamed onto its target; on an error none is and the staged files are removed. A target
    that cannot be written (a folder, a file in the way of its folder) is refused when staged,
    before the later outputs are computed. Stage a file only when it will be written."""
    staged: list[tuple[Path, Path]] = []

    def stage(path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        if target.is_dir():
            raise _cannot_write(target, IsADirectoryError(errno.EISDIR, "Is a directory"))
        tmp = _temp_beside(target, f".tmp{target.suffix}")
        staged.append((tmp, target))
        return tmp

    try:
        yield stage
        umask = os.umask(0)
        os.umask(umask)
        for tmp, target in staged:
            try:
                os.chmod(tmp, 0o666 & ~umask)
                os.replace(tmp, target)
            except OSError as exc:
                raise _cannot_write(target, exc) from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _cannot_write(target: Path, exc: OSError) -> Exception:
    """The one-line error for an output that cannot be written (exit 2, not a bug)."""
    from custtool.errors import environment_error

    err = environment_error(exc, writing=True)
    err.message = f"{target}: cannot write ({exc.strerror or type(exc).__name__})"
    err.args = (err.message,)
    err.file = str(target)
    return err


__all__ = ["all_or_nothing", "atomic_path", "pid_alive", "sweep_leftovers", "temp_prefix"]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes (hex), read 1 MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
