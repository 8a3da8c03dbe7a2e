"""custtool: customer spreadsheets in, clean profiles, tags, segments and reports out.

The same steps the CLI runs, as functions on pandas DataFrames. Nothing heavy is
imported here: the functions below load their modules on first use.
"""

from __future__ import annotations

import warnings
from importlib import import_module
from typing import Any

# pandera imports pyspark.pandas when pyspark is installed (custtool[spark]); pyspark 4 then
# warns on every command that it does not fully support pandas 3. custtool's Spark engine
# uses Spark SQL only, not pyspark.pandas: the warning is noise in every terminal.
warnings.filterwarnings(
    "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
)
__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    "read_table": "custtool.io",
    "write_table": "custtool.io",
    "import_files": "custtool.ingest",
    "import_streamed": "custtool.engines.duckdb_import",
    "normalize_phone": "custtool.normalize",
    "normalize_email": "custtool.normalize",
    "normalize_date": "custtool.normalize",
    "normalize_gender": "custtool.normalize",
    "normalize_amount": "custtool.normalize",
    "normalize_name": "custtool.normalize",
    "normalize_city": "custtool.normalize",
    "normalize_address": "custtool.normalize",
    "validate": "custtool.schemas",
    "dedupe": "custtool.clean",
    "load_clean_rules": "custtool.clean",
    "write_template": "custtool.template",
    "load_rules": "custtool.tags",
    "apply_tags": "custtool.tags",
    "tag_customers": "custtool.tags",
    "tag_statistics": "custtool.tags",
    "check_rules": "custtool.tags",
    "evaluate_condition": "custtool.tags",
    "write_workbook": "custtool.report",
    "pivot": "custtool.report.pivot",
    "mask_frame": "custtool.report.masking",
    "mask_for_output": "custtool.report.masking",
    "migration_matrix": "custtool.report.migration",
    "load_strategies": "custtool.report.strategies",
    "individual_cards": "custtool.cards",
    "group_cards": "custtool.cards",
    "write_cards": "custtool.cards",
    "load_followup_rules": "custtool.followups",
    "due_followups": "custtool.followups",
    "apply_transitions": "custtool.followups",
    "load_pipeline": "custtool.pipeline",
    "run_pipeline": "custtool.pipeline",
    "customer_metrics": "custtool.metrics",
    "rfm_scores": "custtool.rfm",
    "rfm_classes": "custtool.rfm",
    "value_tiers": "custtool.rfm",
    "assign_lifecycle": "custtool.rfm",
    "segment_summary": "custtool.segment",
    "segment_customers": "custtool.segment",
    "load_segment_config": "custtool.segment",
    "bgnbd_summary": "custtool.ltv",
    "fit_bgnbd": "custtool.ltv",
    "fit_gamma_gamma": "custtool.ltv",
    "fit_ltv": "custtool.ltv",
    "satisfaction": "custtool.nps",
    "attribute": "custtool.attribution",
    "survey_nps": "custtool.nps",
    # each CLI command as one call: files in, files out, a StepResult with to_dict()/exit_code
    "run_import": "custtool.steps",
    "run_clean": "custtool.steps",
    "run_segment": "custtool.steps",
    "run_tag": "custtool.steps",
    "run_rules_check": "custtool.steps",
    "run_report": "custtool.steps",
    "run_pivot": "custtool.steps",
    "run_cards": "custtool.steps",
    "run_followups": "custtool.steps",
    "run_template": "custtool.steps",
    "StepResult": "custtool.steps",
    # portrait and funnel (issue 15)
    "summary_metrics": "custtool.metrics",
    "portrait_columns": "custtool.portrait",
    "repurchase_rate": "custtool.portrait",
    "assign_level": "custtool.rfm",
    "assign_contact_classes": "custtool.rfm",
    "sales_funnel": "custtool.funnel",
    "run_funnel": "custtool.steps",
    # report.html / report.pdf and per-owner workbooks (issue 17)
    "write_html": "custtool.report.document",
    "write_pdf": "custtool.report.document",
    "write_owner_workbooks": "custtool.report.owners",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'custtool' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    """The public API (loaded on first use) with the module's own names: what a notebook's
    completion and ``dir(custtool)`` show."""
    return sorted(set(globals()) | set(_API))
