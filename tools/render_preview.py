"""Render one HTML profile card and one workbook sheet to PNG, for a person to look at.

    /work/venv/bin/python tools/render_preview.py [OUT_DIR]     # default: preview/

Not a test. Writes OUT_DIR/cards.html and OUT_DIR/report.xlsx from generated demo data
(300 customers, personal data masked), then, when the tools are installed:

  - OUT_DIR/card.png      the first cards of cards.html, via headless Chromium
                          (apt-get install chromium) or wkhtmltoimage (apt-get install wkhtmltopdf)
  - OUT_DIR/summary.png   the first page of the workbook (the 概览 summary sheet with its charts),
                          via LibreOffice (apt-get install libreoffice-calc) and pdftoppm
                          (apt-get install poppler-utils)

Says which tool is missing instead of failing; exit code 1 when nothing could be rendered.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _first(*names: str) -> str | None:
    return next((p for p in (shutil.which(n) for n in names) if p), None)


def render_card(html_path: Path, png: Path) -> str:
    chrome = _first("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    if chrome:
        subprocess.run(
            [
                chrome,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={png}",
                "--window-size=1000,1400",
                html_path.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return f"card  → {png} (chromium)"
    wk = _first("wkhtmltoimage")
    if wk:
        subprocess.run(
            [wk, "--width", "1000", "--encoding", "utf-8", str(html_path), str(png)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return f"card  → {png} (wkhtmltoimage)"
    return "card  : needs headless Chromium (apt-get install chromium) or wkhtmltoimage (apt-get install wkhtmltopdf)"


def render_sheet(xlsx: Path, png: Path) -> str:
    office = _first("libreoffice", "soffice")
    pdftoppm = _first("pdftoppm")
    if not office or not pdftoppm:
        missing = [
            n
            for n, p in (
                ("libreoffice (apt-get install libreoffice-calc)", office),
                ("pdftoppm (apt-get install poppler-utils)", pdftoppm),
            )
            if not p
        ]
        return "sheet : needs " + " and ".join(missing)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            [office, "--headless", "--convert-to", "pdf", "--outdir", d, str(xlsx)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        pdf = Path(d) / (xlsx.stem + ".pdf")
        subprocess.run(
            [
                pdftoppm,
                "-png",
                "-r",
                "80",
                "-f",
                "1",
                "-l",
                "1",
                "-singlefile",
                str(pdf),
                str(png.with_suffix("")),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return f"sheet → {png} (LibreOffice, first page = 概览)"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    from report_bench import make_customers, make_orders

    from custtool.cards import group_cards, individual_cards, write_cards
    from custtool.report import write_workbook

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "preview")
    out.mkdir(parents=True, exist_ok=True)
    customers = make_customers(300)
    orders = make_orders(customers)
    top = individual_cards(customers, top=1)
    group = group_cards(customers, "rfm_class", segments=["重要价值客户"])
    html_path = write_cards(top, group, out / "cards.html")
    xlsx = write_workbook(customers, out / "report.xlsx", orders=orders).path
    print(f"wrote {html_path} and {xlsx}")
    lines = [render_card(html_path, out / "card.png"), render_sheet(xlsx, out / "summary.png")]
    for line in lines:
        print(line)
    return 0 if any("→" in line for line in lines) else 1


if __name__ == "__main__":
    raise SystemExit(main())
