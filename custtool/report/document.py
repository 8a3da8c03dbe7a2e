"""report.html and report.pdf: one jinja2 template, two outputs (issue 17).

:func:`document_context` gathers what the page shows — the KPIs, the segment tables with
shares, the distributions, the strategies and the NPS — from the SAME functions the Excel
report's 概览 sheet uses (:func:`custtool.report.workbook.kpis`, :func:`segment_table`,
:func:`distribution`, :func:`strategy_table`, the segment step's NPS dict), on the same
role view (:func:`custtool.report.masking.role_view`), so the three outputs cannot disagree.
The page shows aggregates only: no customer row, no personal data.

Charts are inline SVG drawn here; the page has no script, no external CSS, font or image:
it opens from a USB stick without a network. jinja2 autoescapes every text (segment,
city and channel values and strategy texts come from users' files).

:func:`write_html` writes the page; :func:`write_pdf` prints the same page with weasyprint
(the ``pdf`` extra, imported only here): A4, the as-of date in every page's header, Chinese
as real text in the CJK font installed by fonts-noto-cjk ("Noto Sans CJK SC"), embedded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from custtool import labels as L
from custtool.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from custtool.report.masking import Role

TEMPLATE = "report.html.j2"
TEMPLATES = Path(__file__).resolve().parent / "templates"
#: the segment dimensions shown, in this order, with their section title key
SECTIONS = (("rfm_class", "by_rfm"), ("tier", "by_tier"), ("lifecycle", "by_lifecycle"))
PALETTE = ("#2F5597", "#5B9BD5", "#70AD47", "#FFC000", "#ED7D31", "#A5A5A5", "#7030A0", "#C00000")
FORMATS = ("xlsx", "html", "pdf")

_TEXTS = {
    "segments": ("客户分群", "Segments"),
    "share_customers": ("客户占比", "Share of customers"),
    "share_revenue": ("消费额占比", "Share of revenue"),
    "strategies": ("运营策略", "Strategies"),
    "nps_title": ("净推荐值（NPS）", "Net Promoter Score (NPS)"),
    "promoters": ("推荐者", "Promoters"),
    "passives": ("被动者", "Passives"),
    "detractors": ("贬损者", "Detractors"),
    "responses": ("有效回复", "Valid responses"),
    "no_surveys": ("本期无问卷数据", "No survey responses in this run"),
    "owner": ("负责人", "Owner"),
    "generated": ("由 custtool 生成", "Made by custtool"),
    "page": ("第 {p} 页", "Page {p}"),
}


def _t(key: str, lang: str) -> str:
    pair = _TEXTS.get(key)
    if pair is not None:
        return pair[0] if lang == "zh" else pair[1]
    return L.text(key, lang)


@dataclass
class DocumentResult:
    """What :func:`write_html` / :func:`write_pdf` wrote, and the figures the page shows."""

    path: Path
    format: str
    kpis: dict[str, Any] = field(default_factory=dict)
    segments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    as_of: str = ""
    pages: int | None = None  # the PDF's page count

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "as_of": self.as_of,
            "kpis": self.kpis,
            "segments": self.segments,
            **({"pages": self.pages} if self.pages is not None else {}),
        }


# --------------------------------------------------------------------------- formatting
def _num(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _fmt(v: Any, kind: str) -> str:
    f = _num(v)
    if f is None:
        return "-"
    if kind == "int":
        return f"{f:,.0f}"
    if kind == "money":
        return f"{f:,.2f}"
    if kind == "pct":
        return f"{f * 100:.1f}%"
    return f"{f:.1f}"


KPI_KINDS = {
    "customers": "int",
    "active": "int",
    "revenue": "money",
    "aov": "money",
    "repurchase": "pct",
    "nps": "num",
}


# --------------------------------------------------------------------------- SVG charts
def _esc(text: Any) -> str:
    from markupsafe import escape

    return str(escape(str(text)))


def svg_bars(
    items: list[tuple[str, float, str]], *, title: str, color: str = PALETTE[0], width: int = 660
) -> Any:
    """A horizontal bar chart as inline SVG (``Markup``): one bar per (label, value, text);
    bars scaled to the largest value. Every text is escaped."""
    from markupsafe import Markup

    bar_h, gap, top, label_w, text_w = 20, 8, 30, 150, 90
    plot_w = width - label_w - text_w - 10
    height = top + len(items) * (bar_h + gap) + 6
    vmax = max((v for _l, v, _t in items if v > 0), default=1.0)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{_esc(title)}</title>",
        f'<text x="0" y="18" class="chart-title">{_esc(title)}</text>',
    ]
    for i, (label, value, text) in enumerate(items):
        y = top + i * (bar_h + gap)
        w = max(0.0, value) / vmax * plot_w if vmax else 0.0
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_h * 0.72:.1f}" text-anchor="end" '
            f'class="chart-label">{_esc(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + bar_h * 0.72:.1f}" '
            f'class="chart-value">{_esc(text)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def svg_split(items: list[tuple[str, float, str]], *, title: str, width: int = 660) -> Any:
    """One 100% stacked bar (e.g. the NPS split) with a legend, as inline SVG (``Markup``)."""
    from markupsafe import Markup

    top, bar_h = 30, 28
    height = top + bar_h + 40
    total = sum(max(0.0, v) for _l, v, _t in items) or 1.0
    colors = ("#70AD47", "#BFBFBF", "#C00000")
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{_esc(title)}</title>",
        f'<text x="0" y="18" class="chart-title">{_esc(title)}</text>',
    ]
    x = 0.0
    for i, (_label, value, _text) in enumerate(items):
        w = max(0.0, value) / total * width
        parts.append(
            f'<rect x="{x:.1f}" y="{top}" width="{w:.1f}" height="{bar_h}" '
            f'fill="{colors[i % len(colors)]}"/>'
        )
        x += w
    lx = 0
    for i, (label, _value, text) in enumerate(items):
        y = top + bar_h + 24
        parts.append(
            f'<rect x="{lx}" y="{y - 11}" width="12" height="12" fill="{colors[i % len(colors)]}"/>'
            f'<text x="{lx + 16}" y="{y}" class="chart-label">{_esc(label)} {_esc(text)}</text>'
        )
        lx += width // max(len(items), 1)
    parts.append("</svg>")
    return Markup("".join(parts))


# --------------------------------------------------------------------------- the context
def document_context(
    customers: pd.DataFrame,
    *,
    nps: Any = None,
    strategies: pd.DataFrame | str | Path | None = None,
    role: str | Role | None = None,
    owner: str | None = None,
    mask: bool = True,
    lang: str = "zh",
    roles_path: str | Path | None = None,
    as_of: Any = None,
) -> dict[str, Any]:
    """What report.html / report.pdf show, from the functions 概览 uses (see the module doc).

    ``nps``: the segment step's NPS dict (``SegmentResult.nps``) or None; ``role``/``owner``:
    the same view as the workbook (a role without amounts gets no revenue anywhere).
    """
    import pandas as pd

    from custtool.report.masking import Role, check_unmask, get_role, role_view
    from custtool.report.strategies import load_strategies
    from custtool.report.workbook import (
        as_of_text,
        distribution,
        kpis,
        prepare_customers,
        segment_table,
        strategy_table,
    )

    if lang not in {"zh", "en"}:
        raise InputError(f"unknown language {lang!r}", "use --lang zh or --lang en")
    role_obj = role if isinstance(role, Role) else get_role(role, roles_path)
    check_unmask(role_obj, mask)
    view = role_view(prepare_customers(customers), role_obj, owner=owner)
    amounts = role_obj.amounts and "monetary" in view.columns
    if as_of is not None and str(as_of):
        as_of_str = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    else:
        as_of_str = as_of_text(view)

    figures = kpis(view, amounts=amounts, nps=nps)
    kpi_rows = [
        {
            "key": k,
            "label": L.text(f"kpi_{k}", lang),
            "value": v,
            "text": _fmt(v, KPI_KINDS.get(k, "num")),
        }
        for k, v in figures.items()
    ]

    def rows_of(table: pd.DataFrame) -> list[dict[str, Any]]:
        out = []
        for rec in table.to_dict("records"):
            row: dict[str, Any] = {"segment": str(rec["segment"])}
            for col, kind in (
                ("customers", "int"),
                ("customer_share", "pct"),
                ("revenue", "money"),
                ("revenue_share", "pct"),
            ):
                if col in rec:
                    val = _num(rec[col])
                    row[col] = int(val) if kind == "int" and val is not None else val
                    row[f"{col}_text"] = _fmt(val, kind)
            out.append(row)
        return out

    sections = []
    for n, (dim, title_key) in enumerate(SECTIONS):
        if dim not in view.columns:
            continue
        rows = rows_of(segment_table(view, dim, amounts=amounts, lang=lang))
        title = L.text(title_key, lang)
        color = PALETTE[n % len(PALETTE)]
        charts = [
            svg_bars(
                [
                    (r["segment"], r["customer_share"] or 0.0, r["customer_share_text"])
                    for r in rows
                ],
                title=f"{title} · {_t('share_customers', lang)}",
                color=color,
            )
        ]
        if amounts:
            charts.append(
                svg_bars(
                    [
                        (r["segment"], r.get("revenue_share") or 0.0, r["revenue_share_text"])
                        for r in rows
                    ],
                    title=f"{title} · {_t('share_revenue', lang)}",
                    color=PALETTE[(n + 3) % len(PALETTE)],
                )
            )
        sections.append(
            {"key": dim, "title": title, "rows": rows, "charts": charts, "amounts": amounts}
        )

    distributions = []
    channel_col = next(
        (c for c in ("channels", "source_channel", "_channel") if c in view.columns), None
    )
    for col, key in ((channel_col, "by_channel"), ("city", "by_city")):
        if col is None or col not in view.columns:
            continue
        d = distribution(view, col, lang=lang)
        rows = [
            {
                "segment": str(r["segment"]),
                "customers": int(r["customers"]),
                "customers_text": _fmt(r["customers"], "int"),
                "customer_share_text": _fmt(r["customer_share"], "pct"),
            }
            for r in d.to_dict("records")
        ]
        chart = svg_bars(
            [(r["segment"], float(r["customers"]), r["customers_text"]) for r in rows],
            title=L.text(key, lang),
            color=PALETTE[2],
        )
        distributions.append({"key": key, "title": L.text(key, lang), "rows": rows, "chart": chart})

    strat = strategies if isinstance(strategies, pd.DataFrame) else load_strategies(strategies)
    strat_rows = []
    if len(strat):
        table = strategy_table(strat, view, lang)
        for rec in table.to_dict("records"):
            strat_rows.append(
                {
                    "dimension": str(rec["dimension"]),
                    "segment": str(rec["segment"]),
                    "customers": int(rec["customers"]),
                    "goal": str(rec.get("strategy_goal", "")),
                    "measures": str(rec.get("strategy_measures", "")),
                    "channel": str(rec.get("strategy_channel", "")),
                    "cycle": str(rec.get("strategy_cycle", "")),
                }
            )

    nps_block: dict[str, Any] | None = None
    if isinstance(nps, dict) and nps.get("surveys"):
        prom = _num(nps.get("promoters_pct"))
        detr = _num(nps.get("detractors_pct"))
        passive = None if prom is None or detr is None else max(0.0, 100.0 - prom - detr)
        nps_block = {
            "value": _num(nps.get("nps")),
            "text": _fmt(nps.get("nps"), "num"),
            "valid": nps.get("valid"),
            "definition": L.text("nps_definition", lang),
        }
        if prom is not None and detr is not None and passive is not None:
            nps_block["chart"] = svg_split(
                [
                    (_t("promoters", lang), prom, f"{prom:.1f}%"),
                    (_t("passives", lang), passive, f"{passive:.1f}%"),
                    (_t("detractors", lang), detr, f"{detr:.1f}%"),
                ],
                title=_t("nps_title", lang),
            )

    return {
        "lang": lang,
        "title": L.text("report_title", lang),
        "as_of": as_of_str,
        "role": role_obj.name,
        "owner": owner,
        "masked": L.text("masked" if mask else "unmasked", lang),
        "kpis": kpi_rows,
        "kpi_values": figures,
        "sections": sections,
        "distributions": distributions,
        "strategies": strat_rows,
        "nps": nps_block,
        "for_print": False,
        "t": {k: _t(k, lang) for k in _TEXTS}
        | {
            k: L.text(k, lang)
            for k in ("as_of", "role", "kpi_nps", "sheet_strategy", "sheet_summary")
        }
        | {
            k: L.label(k, lang)
            for k in (
                "segment",
                "customers",
                "customer_share",
                "revenue",
                "revenue_share",
                "dimension",
                "strategy_goal",
                "strategy_measures",
                "strategy_channel",
                "strategy_cycle",
            )
        },
    }


def render_html(context: dict[str, Any]) -> str:
    """The report page: ``report.html.j2`` rendered with autoescape on."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(**context)


def _result(context: dict[str, Any], path: Path, fmt: str) -> DocumentResult:
    return DocumentResult(
        path=path,
        format=fmt,
        kpis=dict(context["kpi_values"]),
        segments={
            s["key"]: [{k: v for k, v in r.items() if not k.endswith("_text")} for r in s["rows"]]
            for s in context["sections"]
        },
        as_of=context["as_of"],
    )


def write_html(customers: pd.DataFrame, path: str | Path, **options: Any) -> DocumentResult:
    """Write the self-contained report.html (options: those of :func:`document_context`)."""
    from custtool.atomic import atomic_path

    context = document_context(customers, **options)
    target = Path(path)
    html = render_html(context)
    with atomic_path(target) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return _result(context, target, "html")


def load_weasyprint() -> Any:
    """weasyprint, or an exit-2 error saying how to install it (the ``pdf`` extra)."""
    try:
        import weasyprint
    except ImportError:
        raise InputError(
            "the PDF report needs weasyprint, which is not installed",
            'pip install "custtool[pdf]" (or leave pdf out of --format / report: formats)',
        ) from None
    except OSError as exc:  # Pango / its libraries missing
        raise InputError(
            f"weasyprint cannot load its system libraries ({exc})",
            "install Pango and a CJK font: apt-get install libpango-1.0-0 libpangoft2-1.0-0 "
            "fonts-noto-cjk",
        ) from None
    return weasyprint


def write_pdf(customers: pd.DataFrame, path: str | Path, **options: Any) -> DocumentResult:
    """Print the same page to report.pdf with weasyprint (A4, as-of date in the header)."""
    from custtool.atomic import atomic_path

    weasyprint = load_weasyprint()
    context = document_context(customers, **options)
    target = Path(path)
    html = render_html(context | {"for_print": True})
    doc = weasyprint.HTML(string=html, base_url=str(TEMPLATES)).render()
    with atomic_path(target) as tmp:
        doc.write_pdf(str(tmp))
    result = _result(context, target, "pdf")
    result.pages = len(doc.pages)
    return result


__all__ = [
    "DocumentResult",
    "document_context",
    "render_html",
    "write_html",
    "write_pdf",
    "svg_bars",
    "svg_split",
    "FORMATS",
]
