#!/usr/bin/env bash
# The one command that runs every check: formatting, lints, the Rust tests and
# the Gen3 acceptance suite, each on SQLite and on PostgreSQL (a backend
# matrix over the same tests), the portal's browser tests, then a short run
# of every fuzz target.
# Exits non-zero on any failure.
#
# PostgreSQL comes from COMMONS_TEST_POSTGRES_URL (default: the local server,
# user postgres, trust auth). Without it the PostgreSQL runs are skipped with a
# warning, except in CI (CI=true), where a missing PostgreSQL is a failure.
# Arguments (e.g. pytest arguments) go to acceptance.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n======== %s ========\n' "$*"; }

pg_url=${COMMONS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export COMMONS_TEST_POSTGRES_URL=$pg_url
postgres=true
if ! psql "$pg_url" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    if [[ ${CI:-} == true ]]; then
        echo "PostgreSQL at $pg_url is not reachable, and CI requires it" >&2
        exit 1
    fi
    echo "WARNING: PostgreSQL at $pg_url is not reachable: PostgreSQL runs are skipped" >&2
    postgres=false
fi

# cargo-nextest (on the machine, or `cargo install cargo-nextest`) runs each
# test in a process of its own, side by side; plain `cargo test` runs them as
# threads of one process.
# tests/it/database_restart.rs stops the PostgreSQL server and
# tests/it/database_tls.rs changes its certificate, so nextest runs their
# tests alone, after the others. `--tests` leaves out the benchmark (clippy checks it).
if cargo nextest --version >/dev/null 2>&1; then
    runner="cargo nextest run"
    run_tests() {
        cargo nextest run --tests -E 'not test(/^database_(restart|tls)::/)'
        cargo nextest run --tests -E 'test(/^database_(restart|tls)::/)' --test-threads 1
    }
else
    runner="cargo test"
    run_tests() {
        cargo test --tests -- --skip database_restart:: --skip database_tls::
        cargo test --tests database_restart:: -- --test-threads 1
        cargo test --tests database_tls::
    }
fi

section "format: cargo fmt --check"
cargo fmt --all -- --check

section "lint: cargo clippy"
cargo clippy --all-targets -- -D warnings

section "dependencies: scripts/deny.sh (advisories, licences, bans, sources)"
scripts/deny.sh

section "Rust tests on SQLite: $runner"
run_tests

if $postgres; then
    section "Rust tests on PostgreSQL: COMMONS_TEST_BACKEND=postgres $runner"
    COMMONS_TEST_BACKEND=postgres run_tests
fi

# The suites below drive the binary the tests were built with (the dev
# profile): a separate release build would double the compile time of a run.
bin="${CARGO_TARGET_DIR:-target}/debug/commons"

section "dictionary conformance with Gen3's loader (dictionaryutils)"
COMMONS_BIN=$bin scripts/conformance.sh

section "Gen3 acceptance suite on SQLite"
COMMONS_BIN=$bin scripts/acceptance.sh "$@"

if $postgres; then
    section "Gen3 acceptance suite on PostgreSQL, data files in S3 (s3s-fs)"
    db="commons_acceptance_$$"
    psql "$pg_url" -qc "CREATE DATABASE $db"
    trap 'psql "$pg_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1' EXIT
    # Here the admin's key comes from the profile API (login + POST /user/credentials/api/).
    # And the data files in an S3-compatible bucket.
    COMMONS_BIN=$bin scripts/acceptance.sh --database-url "${pg_url%/*}/$db" --profile-credentials --s3 "$@"
fi

section "portal end-to-end tests in headless Chromium"
COMMONS_BIN=$bin scripts/portal-e2e.sh

section "fuzzing: scripts/fuzz.sh (FUZZ_SECONDS=${FUZZ_SECONDS:-15} per target)"
if cargo +nightly --version >/dev/null 2>&1; then
    FUZZ_SECONDS=${FUZZ_SECONDS:-15} scripts/fuzz.sh
elif [[ ${CI:-} == true ]]; then
    echo "the nightly toolchain (needed by cargo-fuzz) is missing, and CI requires fuzzing" >&2
    exit 1
else
    echo "WARNING: no nightly toolchain: fuzzing skipped" >&2
fi

section "all checks passed"
