#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine that has only
# Python 3.11, pip and gcc, then leaves a virtual environment in .venv/:
#   - system packages (apt-get, as root): Java for the Spark engine, Chromium for the
#     offline HTML report, a CJK font and Pango for the PDF report;
#   - custtool with its test extra (pytest, hypothesis, aiosmtpd, pyspark, weasyprint, ...).
# Run it from anywhere; it is idempotent and installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    openjdk-17-jre-headless   # pyspark (custtool[spark]) needs Java 17+
    chromium                  # headless browser test of report.html
    fonts-noto-cjk            # real Chinese glyphs in report.pdf
    libpango-1.0-0            # weasyprint renders through Pango
    libpangoft2-1.0-0
    fontconfig
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup-test: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup-test: missing system packages: ${missing[*]}" >&2
        echo "setup-test: install them (sudo apt-get install ${missing[*]}); the tests that need them are skipped outside CI" >&2
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e ".[test]"
