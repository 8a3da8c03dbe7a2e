"""The report step: Excel workbook, masking, roles, strategies, pivots and migration."""

from __future__ import annotations

from custtool.report.workbook import ReportResult, write_workbook

__all__ = ["ReportResult", "write_workbook"]
