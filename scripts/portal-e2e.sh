#!/usr/bin/env bash
# The portal's end-to-end tests: headless Chromium (Debian's package, driven
# by playwright-core from portal/package-lock.json) against a real
# `commons serve`. Also checks that the embedded GraphiQL/React files match
# the lockfile. Screenshots go to target/portal-screenshots.
#
# COMMONS_BIN: the binary to test (default target/release/commons).
# Without Node.js or Chromium the tests are skipped with a warning, except in
# CI (CI=true), where that is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

missing=()
command -v node >/dev/null 2>&1 || missing+=(node)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || missing+=(chromium)
if ((${#missing[@]})); then
    if [[ ${CI:-} == true ]]; then
        echo "portal end-to-end tests need: ${missing[*]} (CI requires them)" >&2
        exit 1
    fi
    echo "WARNING: ${missing[*]} missing: portal end-to-end tests skipped (apt-get install nodejs npm chromium)" >&2
    exit 0
fi

scripts/portal-vendor.sh --check
export COMMONS_BIN=${COMMONS_BIN:-$PWD/${CARGO_TARGET_DIR:-target}/release/commons}
export COMMONS_SCREENSHOTS=${COMMONS_SCREENSHOTS:-$PWD/target/portal-screenshots}
node --test portal/e2e/
echo "screenshots: $COMMONS_SCREENSHOTS"
