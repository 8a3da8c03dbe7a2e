"""The strategy table per segment (SPEC E3), read from ``rules/strategies.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from custtool.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

DEFAULT_STRATEGIES = Path(__file__).resolve().parent.parent / "rules" / "strategies.yaml"

DIMENSIONS = ("rfm_class", "tier", "lifecycle")
FIELDS = ("goal", "measures", "channel", "frequency", "owner", "cycle")
_ALIASES = {"目标": "goal", "措施": "measures", "渠道": "channel", "频率": "frequency", "负责人": "owner", "周期": "cycle"}
STRATEGY_COLUMNS = ["dimension", "segment", *(f"strategy_{f}" for f in FIELDS)]


def load_strategies(path: str | Path | None = None) -> pd.DataFrame:
    """One row per (dimension, segment): goal, measures, channel, frequency, owner, cycle.

    Columns: ``dimension``, ``segment``, ``strategy_goal`` … ``strategy_cycle``.
    """
    import pandas as pd

    p = Path(path) if path else DEFAULT_STRATEGIES
    from custtool.config import load_yaml

    data = load_yaml(p, what="strategies file", hint="pass --strategies rules/strategies.yaml", empty={})
    if not isinstance(data, dict):
        raise ConfigError(f"{p.name}: expected a mapping with rfm_class / tier / lifecycle sections")
    unknown = set(data) - set(DIMENSIONS)
    if unknown:
        raise ConfigError(
            f"{p.name}: unknown section(s) {', '.join(sorted(map(str, unknown)))}",
            f"sections are: {', '.join(DIMENSIONS)}",
        )
    rows = []
    for dim in DIMENSIONS:
        section = data.get(dim) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{p.name}: section {dim!r} must map segment names to strategies")
        for seg, spec in section.items():
            if not isinstance(spec, dict):
                raise ConfigError(f"{p.name}: {dim} → {seg!r}: expected goal/measures/channel/frequency/owner/cycle")
            row = {"dimension": dim, "segment": str(seg)}
            for key, val in spec.items():
                field = _ALIASES.get(str(key), str(key))
                if field not in FIELDS:
                    raise ConfigError(
                        f"{p.name}: {dim} → {seg!r}: unknown field {key!r}",
                        f"fields are: {', '.join(FIELDS)} (or 目标/措施/渠道/频率/负责人/周期)",
                    )
                if isinstance(val, list):
                    val = "；".join(map(str, val))
                row[f"strategy_{field}"] = "" if val is None else str(val)
            rows.append(row)
    out = pd.DataFrame(rows, columns=STRATEGY_COLUMNS)
    out = out.astype(object)
    return out.where(out.notna(), "")


def suggested_actions(customers: pd.DataFrame, strategies: pd.DataFrame) -> pd.Series:
    """Per customer, the strategy's measures for its rfm_class, else lifecycle, else tier.

    Returns a Series of str aligned with ``customers`` ("" when no strategy applies).
    """
    import pandas as pd

    out = pd.Series("", index=customers.index, dtype=object)
    for dim in ("rfm_class", "lifecycle", "tier"):
        if dim not in customers.columns:
            continue
        table = strategies.loc[strategies["dimension"] == dim]
        measures = dict(zip(table["segment"], table["strategy_goal"] + "：" + table["strategy_measures"], strict=True))
        found = customers[dim].astype("string").fillna("").map(measures).fillna("").astype(object)
        out = out.where(out != "", found)
    return out
