"""The one as-of rule, durations, ages and firm-local times.

The as-of date of every step is explicit or, when not given, the latest valid order day —
never today's date (so a re-run next week gives the same tags and tasks). Order times are
converted to the firm's time zone before they are cut into days.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from custtool.errors import ConfigError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


def parse_days(value: Any, what: str = "window") -> int:
    """'365d', '52w', '12m' (months of 365.25/12 days, rounded), '1y', or a number of days."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: {value!r} is not a duration", "write e.g. 365d, 26w, 12m or 1y")
    if isinstance(value, int | float):
        days = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dwmy]?)\s*", str(value).lower())
        if not m:
            raise ConfigError(f"{what}: {value!r} is not a duration", "write e.g. 365d, 26w, 12m or 1y")
        n, unit = float(m.group(1)), m.group(2) or "d"
        days = n * {"d": 1.0, "w": 7.0, "m": 365.25 / 12, "y": 365.0}[unit]
    out = int(round(days))
    if out <= 0:
        raise ConfigError(f"{what}: {value!r} must be at least one day", "write e.g. 365d")
    return out


def parse_as_of(value: Any) -> pd.Timestamp | None:
    """An as-of day (midnight, naive) from a str/date/Timestamp; None stays None."""
    import pandas as pd

    if value is None or value == "":
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InputError(f"--as-of {value!r} is not a date", "write it as YYYY-MM-DD, e.g. 2024-06-30") from None
    if ts is pd.NaT:
        raise InputError(f"--as-of {value!r} is not a date", "write it as YYYY-MM-DD")
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    return ts.normalize()


def age_at(birth_date: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Age in full years at ``as_of`` (Int64); empty for a missing or impossible birth date."""
    import pandas as pd

    b = pd.to_datetime(birth_date, errors="coerce")
    before_birthday = (b.dt.month > as_of.month) | ((b.dt.month == as_of.month) & (b.dt.day > as_of.day))
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
            raise ConfigError(f"unknown time zone {tz!r} ({exc})", "use an IANA name such as Asia/Shanghai") from None
    return s


def day_numbers(s: pd.Series) -> np.ndarray:
    """Naive datetimes → int64 day numbers since 1970-01-01 (NaT → INT64 min)."""
    import numpy as np

    arr = s.to_numpy()
    if arr.dtype.kind != "M":
        arr = arr.astype("datetime64[ns]")
    return arr.astype("datetime64[D]").view(np.int64)
