#!/usr/bin/env bash
# Render the first page of a generated workbook to PNG with LibreOffice, for the staff guide.
# Needs: libreoffice-calc, fonts-noto-cjk, poppler-utils (pdftoppm). Usage: docs/render-workbook.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/images/workbook-utilities.png}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/lixiao demo "$work/demo" --students 120 >/dev/null
.venv/bin/lixiao --data "$work/demo" set 2201010101 electricity passed >/dev/null
.venv/bin/lixiao --data "$work/demo" issue --checkpoint certificates --checkpoint utilities >/dev/null
cp "$work"/demo/outbox/utilities/*.xlsx "$work/book.xlsx"
soffice --headless "-env:UserInstallation=file://$work/profile" --convert-to pdf --outdir "$work" "$work/book.xlsx" >/dev/null
pdftoppm -r 80 -f 1 -l 1 -png "$work/book.pdf" "$work/page"
cp "$work"/page-*1.png "$out"
echo "$out"
