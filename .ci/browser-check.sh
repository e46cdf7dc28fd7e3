#!/usr/bin/env bash
# Opens an HTML report in headless Chromium and fails on console errors, page errors, images
# that do not load, or any attempt to fetch something from the network; saves a full-page
# screenshot.
#
#   .ci/browser-check.sh REPORT_HTML SCREENSHOT_PNG
#
# Installs what it needs when missing: Debian's chromium (apt-get) and Node's playwright-core
# (npm, pinned by .ci/browser/package-lock.json, into .ci/browser/node_modules). playwright-core
# downloads no browser; it drives /usr/bin/chromium (override with CHROMIUM=/path).
#
# A demo report to try it on (every panel kind, a failing check, escaped markup):
#   NEQUIL_DEMO_DIR=out/demo cargo test --release -p nequil-paper --lib -- --ignored write_demo_report
#   .ci/browser-check.sh out/demo/report.html out/demo/screenshot.png
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 REPORT_HTML SCREENSHOT_PNG" >&2
  exit 2
fi
report=$1
shot=$2
here=$(cd "$(dirname "$0")" && pwd)

if [ ! -f "$report" ]; then
  echo "browser-check: no such report: $report" >&2
  exit 2
fi

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "browser-check: installing chromium (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser-check: installing nodejs and npm (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f "$here/browser/node_modules/playwright-core/package.json" ]; then
  echo "browser-check: installing playwright-core (npm ci)" >&2
  (cd "$here/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi

mkdir -p "$(dirname "$shot")"
CHROMIUM="$chromium" exec node "$here/browser/check.mjs" "$report" "$shot"
