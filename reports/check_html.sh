#!/usr/bin/env bash
# Open each report page in headless Chromium and check that it loads and every figure decodes.
# Needs Chromium (Debian: apt-get install chromium). Usage: bash reports/check_html.sh reports/*/index.html
set -euo pipefail
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
status=0
for page in "$@"; do
  dom=$("$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
        --virtual-time-budget=5000 --dump-dom "file://$(realpath "$page")" 2>/dev/null)
  figs=$(grep -o 'data-figures="[0-9]*/[0-9]*"' <<<"$dom" | head -1 | cut -d'"' -f2)
  if [[ -z "$figs" || "${figs%/*}" != "${figs#*/}" || "${figs#*/}" == "0" ]]; then
    echo "FAIL $page: figures decoded ${figs:-none}"; status=1
  else
    echo "ok   $page: $figs figures decoded"
  fi
done
exit $status
