#!/usr/bin/env bash
# Open each report page in headless Chromium: every chart must draw (data-charts="n/n"), the page must
# raise no script error and log nothing to the console at error level; a screenshot of each page is
# written beside it as screenshot.png (or under $SHOTS when set). Needs Chromium (Debian: apt-get install
# chromium). Usage: bash reports/check_html.sh reports/*/index.html
set -euo pipefail
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking --hide-scrollbars
       --window-size=1280,2400 --virtual-time-budget=8000)
status=0
for page in "$@"; do
  url="file://$(realpath "$page")"
  log=$(mktemp)
  dom=$("$browser" "${flags[@]}" --enable-logging=stderr --v=0 --dump-dom "$url" 2>"$log" || true)
  shot="${SHOTS:-$(dirname "$page")}/$(basename "$(dirname "$page")")-screenshot.png"
  [[ -n "${SHOTS:-}" ]] || shot="$(dirname "$page")/screenshot.png"
  "$browser" "${flags[@]}" --screenshot="$shot" "$url" >/dev/null 2>&1 || true
  charts=$(grep -o 'data-charts="[0-9]*/[0-9]*"' <<<"$dom" | head -1 | cut -d'"' -f2 || true)
  errors=$(grep -o 'data-errors="[0-9]*"' <<<"$dom" | head -1 | cut -d'"' -f2 || true)
  console=$(grep -E 'CONSOLE.*(ERROR|Uncaught)|:ERROR:CONSOLE' "$log" | grep -v -E 'dbus|gcm|viz' || true)
  rm -f "$log"
  if [[ -z "$charts" || "${charts%/*}" != "${charts#*/}" || -n "$errors" || -n "$console" ]]; then
    echo "FAIL $page: charts drawn ${charts:-none}, script errors ${errors:-0}${console:+, console: $console}"
    status=1
  else
    echo "ok   $page: $charts charts drawn, no script or console errors; screenshot $shot"
  fi
done
exit $status
