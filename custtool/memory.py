"""Memory a run hands back between its steps (the import's batches, the run's steps): one
home for the collection, Arrow's pool and glibc's free pages."""

from __future__ import annotations

# input rows from which a run hands memory back between its steps (release_memory): below
# it the tables are a few MB and a full garbage collection costs more than it frees
# (~0.1-0.5 s each in a fresh process, 6 a run)
RELEASE_MEMORY_ROWS = 100_000


def release_memory(rows: int | None = None, threshold: int | None = None) -> None:
    """Hand memory the run no longer uses back to the system: collected garbage, Arrow's
    cached pool memory and glibc's free heap pages (freed frames otherwise stay in the
    process's resident size, and the next step's allocations add to it). Outputs unchanged.

    ``rows``: the run's input rows; a run under ``threshold`` (default
    :data:`RELEASE_MEMORY_ROWS`) skips it. Unknown (None): always released."""
    import ctypes
    import gc

    limit = RELEASE_MEMORY_ROWS if threshold is None else threshold
    if rows is not None and rows < limit:
        return

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
