"""The one as-of rule, durations, ages and firm-local times.

The as-of date of every step is explicit or, when not given, the latest valid order day —
never today's date (so a re-run next week gives the same tags and tasks). Order times are
converted to the firm's time zone before they are cut into days.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Literal, overload

from custtool.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


#: the longest duration: the years dates are read in (1900–2100, as AS_OF_YEARS)
MAX_DAYS = 200 * 365


def parse_days(value: Any, what: str = "window") -> int:
    """'365d', '52w', '12m' (months of 365.25/12 days, rounded), '1y', or a number of days."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: {value!r} is not a duration", "write e.g. 365d, 26w, 12m or 1y")
    if isinstance(value, int | float):
        days = float(value)
        if days != days:  # nan
            raise ConfigError(f"{what}: {value!r} is not a duration", "write e.g. 365d")
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dwmy]?)\s*", str(value).lower())
        if not m:
            raise ConfigError(
                f"{what}: {value!r} is not a duration", "write e.g. 365d, 26w, 12m or 1y"
            )
        n, unit = float(m.group(1)), m.group(2) or "d"
        days = n * {"d": 1.0, "w": 7.0, "m": 365.25 / 12, "y": 365.0}[unit]
    if not days < MAX_DAYS + 0.5:  # also inf and nan
        raise ConfigError(
            f"{what}: {value!r} is longer than the {MAX_DAYS:,} days custtool reads dates over",
            "write e.g. 365d, or 200y at the most",
        )
    out = int(round(days))
    if out <= 0:
        raise ConfigError(f"{what}: {value!r} must be at least one day", "write e.g. 365d")
    return out


#: the years an as-of day may fall in: those of the dates import accepts (normalize.py)
AS_OF_YEARS = (1900, 2100)


def parse_as_of(value: Any) -> pd.Timestamp | None:
    """An as-of day (midnight, naive) from a str/date/Timestamp; None stays None."""
    import pandas as pd

    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InputError(
            f"--as-of {value!r} is not a date", "write it as YYYY-MM-DD, e.g. 2024-06-30"
        ) from None
    if ts is pd.NaT:
        raise InputError(f"--as-of {value!r} is not a date", "write it as YYYY-MM-DD")
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    if not AS_OF_YEARS[0] <= ts.year <= AS_OF_YEARS[1]:  # the years import reads as dates
        raise InputError(
            f"--as-of {value!r} is out of range",
            f"give a day between {AS_OF_YEARS[0]} and {AS_OF_YEARS[1]}, e.g. 2024-06-30",
        )
    return ts.normalize()


@overload
def resolve_as_of(
    explicit: Any = ...,
    orders_or_day: Any = ...,
    *,
    tz: str | None = ...,
    required: Literal[True] = ...,
) -> pd.Timestamp: ...
@overload
def resolve_as_of(
    explicit: Any = ..., orders_or_day: Any = ..., *, tz: str | None = ..., required: bool
) -> pd.Timestamp | None: ...
def resolve_as_of(
    explicit: Any = None, orders_or_day: Any = None, *, tz: str | None = None, required: bool = True
) -> pd.Timestamp | None:
    """The one as-of rule: ``explicit`` when given, else the latest valid day of
    ``orders_or_day``; never today's date.

    ``orders_or_day`` is an orders table (its ``order_time``, cut into days in the firm's
    time zone ``tz``), the path of an orders Parquet (the same: its latest ``order_time``
    is found by DuckDB over the file, :func:`latest_order_time`, never loading the table),
    a Series of times or days (e.g. the ``as_of`` column a segmented
    table carries), or one day. With nothing to take the date from, an InputError asks for
    ``--as-of`` (``required=False``: None instead).
    """
    import pandas as pd

    ts = parse_as_of(explicit)
    if ts is not None:
        return ts
    day: Any = orders_or_day
    if isinstance(day, os.PathLike):
        day = latest_order_time(day)
    if isinstance(day, pd.DataFrame):
        day = day["order_time"] if "order_time" in day.columns else None
        if day is not None and tz is not None:
            day = local_times(day, tz)
    if isinstance(day, pd.Series):
        if not pd.api.types.is_datetime64_any_dtype(day):
            day = pd.to_datetime(day, errors="coerce", format="mixed")
        if isinstance(day.dtype, pd.DatetimeTZDtype):
            day = day.dt.tz_localize(None)
        day = day.max() if day.notna().any() else None
    if day is not None and not (isinstance(day, float) and day != day):
        return parse_as_of(day)
    if not required:
        return None
    raise InputError(
        "no as-of date: it is the latest order day, and there are no orders with a valid time",
        "pass --as-of YYYY-MM-DD (as_of: in a pipeline file), or segment the customers first",
    )


def latest_order_time(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The latest ``order_time`` of an orders Parquet as a one-row orders table (its type as
    stored: a zoned time stays zoned), for :func:`resolve_as_of`. Computed by DuckDB over the
    file; only a column stored as text (never written by ``custtool import``) is read whole
    and parsed as the in-memory rule would."""
    import pandas as pd

    from custtool.engines import duckdb_connect
    from custtool.engines.sql import quote

    src = quote(str(path))
    con = duckdb_connect(threads=2)
    try:
        types = {
            r[0]: str(r[1]).upper()
            for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({src})").fetchall()
        }
        if "order_time" not in types:
            return pd.DataFrame()
        if not types["order_time"].startswith(
            ("TIMESTAMP", "DATE")
        ):  # text: every value parsed, as in memory
            sql = f"SELECT order_time FROM read_parquet({src})"
        else:  # max over instants = max over local times (the conversion is monotonic)
            sql = f"SELECT max(order_time) AS order_time FROM read_parquet({src})"
        rel = con.sql(sql)
        col = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    finally:
        con.close()
    return col.to_pandas()


def age_at(birth_date: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Age in full years at ``as_of`` (Int64); empty for a missing or impossible birth date."""
    import pandas as pd

    b = pd.to_datetime(birth_date, errors="coerce")
    before_birthday = (b.dt.month > as_of.month) | (
        (b.dt.month == as_of.month) & (b.dt.day > as_of.day)
    )
    years = as_of.year - b.dt.year - before_birthday.astype(int)
    return years.where(b.notna() & (b <= as_of) & (years <= 120)).astype("Int64")


def local_times(s: pd.Series, tz: str) -> pd.Series:
    """Order times as naive firm-local datetimes: tz-aware → converted to ``tz``; naive kept."""
    import pandas as pd

    if not isinstance(s.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_datetime64_dtype(s):
        s = pd.to_datetime(s, errors="coerce", format="mixed")
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        try:
            s = s.dt.tz_convert(tz).dt.tz_localize(None)
        except Exception as exc:  # unknown time zone name
            raise ConfigError(
                f"unknown time zone {tz!r} ({exc})", "use an IANA name such as Asia/Shanghai"
            ) from None
    return s


def day_numbers(s: pd.Series) -> np.ndarray:
    """Naive datetimes → int64 day numbers since 1970-01-01 (NaT → INT64 min)."""
    import numpy as np

    arr = s.to_numpy()
    if arr.dtype.kind != "M":
        arr = arr.astype("datetime64[ns]")
    return arr.astype("datetime64[D]").view(np.int64)
