#!/usr/bin/env bash
# Copy the third-party browser code the portal embeds (GraphiQL, React) from
# the versions pinned in portal/package-lock.json into portal/static/vendor.
# The copies are committed, so building and running Commons needs no Node.js;
# `--check` (run by the test command) fails if they differ from the lockfile's.
set -euo pipefail
cd "$(dirname "$0")/../portal"
npm ci --no-audit --no-fund --loglevel=error
out=static/vendor
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp node_modules/react/umd/react.production.min.js "$staging/"
cp node_modules/react-dom/umd/react-dom.production.min.js "$staging/"
cp node_modules/graphiql/graphiql.min.js node_modules/graphiql/graphiql.min.css "$staging/"
for package in react react-dom graphiql graphql; do
    cp "node_modules/$package/LICENSE" "$staging/LICENSE.$package"
done
if [[ "${1:-}" == "--check" ]]; then
    if ! diff -r "$staging" "$out"; then
        echo "portal/static/vendor differs from portal/package-lock.json: run scripts/portal-vendor.sh and commit" >&2
        exit 1
    fi
    echo "portal/static/vendor matches portal/package-lock.json"
else
    rm -rf "$out"
    mkdir -p "$out"
    cp "$staging"/* "$out/"
    echo "wrote $out"
fi
