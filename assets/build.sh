#!/usr/bin/env bash
# Rebuild assets/script.js (the served, minified tracker) from assets/tracker.js. Needs Node's npx; footfall itself does not.
# tests/test_tracker.py checks that script.js.source-sha256 matches tracker.js, so a stale build fails the tests.
set -euo pipefail
cd "$(dirname "$0")"
npx -y terser@5.36.0 tracker.js --compress --mangle --ecma 2020 --comments false --output script.js
sha256sum tracker.js | cut -d' ' -f1 > script.js.source-sha256
echo "script.js: $(wc -c < script.js) bytes, $(gzip -9 -c script.js | wc -c) gzipped"
