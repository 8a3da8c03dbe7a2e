"""The strategy table per segment (SPEC E3), read from ``rules/strategies.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


DIMENSIONS = ("rfm_class", "tier", "lifecycle")
FIELDS = ("goal", "measures", "channel", "frequency", "owner", "cycle")
STRATEGY_COLUMNS = ["dimension", "segment", *(f"strategy_{f}" for f in FIELDS)]


def load_strategies(path: str | Path | None = None) -> pd.DataFrame:
    """One row per (dimension, segment): goal, measures, channel, frequency, owner, cycle.

    Columns: ``dimension``, ``segment``, ``strategy_goal`` … ``strategy_cycle``.
    """
    import pandas as pd

    from custtool.config import StrategiesFile, english_strategy_keys, load_model

    f = load_model(
        StrategiesFile,
        path,
        default="strategies.yaml",
        what="strategies file",
        hint="pass --strategies rules/strategies.yaml",
        prepare=english_strategy_keys,
    )
    rows = []
    for dim in DIMENSIONS:
        for seg, spec in (getattr(f, dim) or {}).items():
            row = {"dimension": dim, "segment": str(seg)}
            for key, val in spec.model_dump(exclude_none=True).items():
                row[f"strategy_{key}"] = (
                    "；".join(map(str, val)) if isinstance(val, list) else str(val)
                )
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
        measures = dict(
            zip(
                table["segment"],
                table["strategy_goal"] + "：" + table["strategy_measures"],
                strict=True,
            )
        )
        found = customers[dim].astype("string").fillna("").map(measures).fillna("").astype(object)
        out = out.where(out != "", found)
    return out
