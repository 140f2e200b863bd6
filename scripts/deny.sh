#!/usr/bin/env bash
# Advisories, licences, banned crates and sources of every dependency, with
# cargo-deny and deny.toml. The advisory database is RustSec's, from GitHub;
# where GitHub is out of reach (CI machines may reach only the package
# registries), from the snapshot in .ci/advisory-db.tar.gz, whose date is
# printed: refresh it with `scripts/deny.sh --refresh-snapshot` on a machine
# that reaches GitHub.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
upstream=https://github.com/rustsec/advisory-db
snapshot=.ci/advisory-db.tar.gz
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked

if [[ ${1:-} == --refresh-snapshot ]]; then
    work=$(mktemp -d)
    git clone -q --depth 1 "$upstream" "$work/advisory-db"
    git -C "$work/advisory-db" log -1 --format=%cs > .ci/advisory-db.date
    tar -czf "$snapshot" -C "$work" --exclude=.git advisory-db
    rm -rf "$work"
    echo "snapshot of $(cat .ci/advisory-db.date) written to $snapshot"
    exit 0
fi

if timeout 30 git ls-remote "$upstream" HEAD >/dev/null 2>&1; then
    cargo deny --locked check
else
    # The snapshot, as a git repository where cargo-deny keeps the database
    # of the default URL (a directory named after the URL's hash), dated as
    # the snapshot; then the check runs offline.
    dbs=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs
    local_db=$dbs/advisory-db-3157b0e258782691
    date=$(cat .ci/advisory-db.date)
    rm -rf "$local_db"
    mkdir -p "$local_db"
    tar -xzf "$snapshot" -C "$local_db" --strip-components=1
    git -C "$local_db" init -q
    git -C "$local_db" add -A
    GIT_COMMITTER_DATE="${date}T00:00:00Z" GIT_AUTHOR_DATE="${date}T00:00:00Z" \
        git -C "$local_db" -c user.name=commons -c user.email=commons@localhost commit -qm "RustSec advisory-db snapshot"
    touch -d "$date" "$local_db/.git/FETCH_HEAD"
    echo "GitHub is out of reach: advisories from the snapshot of $date ($snapshot)"
    # The snapshot is older than cargo-deny's default 90 days allow.
    config=target/deny-offline.toml
    mkdir -p target
    sed 's|^\[advisories\]|[advisories]\nmaximum-db-staleness = "P3650D"|' deny.toml > "$config"
    # Offline, cargo-deny reads every locked crate (all platforms') from the
    # local registry: fetch them from crates.io first (a build fetches only
    # this platform's).
    cargo fetch --locked
    cargo deny --locked --offline --config "$config" check
fi
