"""custtool: customer spreadsheets in, clean profiles, tags, segments and reports out.

The same steps the CLI runs, as functions on pandas DataFrames. Nothing heavy is
imported here: the functions below load their modules on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    "read_table": "custtool.io",
    "write_table": "custtool.io",
    "import_files": "custtool.ingest",
    "normalize_phone": "custtool.clean",
    "normalize_email": "custtool.clean",
    "normalize_date": "custtool.clean",
    "normalize_gender": "custtool.clean",
    "normalize_amount": "custtool.clean",
    "normalize_name": "custtool.clean",
    "normalize_city": "custtool.clean",
    "validate": "custtool.schemas",
    "write_template": "custtool.template",
    "customer_metrics": "custtool.rfm",
    "rfm_scores": "custtool.rfm",
    "rfm_classes": "custtool.rfm",
    "value_tiers": "custtool.rfm",
    "assign_lifecycle": "custtool.rfm",
    "segment_summary": "custtool.rfm",
    "segment_customers": "custtool.rfm",
    "load_segment_config": "custtool.rfm",
    "bgnbd_summary": "custtool.ltv",
    "fit_bgnbd": "custtool.ltv",
    "fit_gamma_gamma": "custtool.ltv",
    "fit_ltv": "custtool.ltv",
    "satisfaction": "custtool.nps",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'custtool' has no attribute {name!r}")
    return getattr(import_module(module), name)
