#!/usr/bin/env bash
# Run every cargo-fuzz target (fuzz/fuzz_targets) for FUZZ_SECONDS each
# (default 20) from the committed seed corpora. New inputs go to a scratch
# folder, so the repository is not changed; a crash fails the run and leaves
# its input in fuzz/artifacts/ (turn it into a regression test).
# Needs the nightly toolchain and cargo-fuzz (installed here if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
seconds=${FUZZ_SECONDS:-20}
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# No sanitizer: libFuzzer's coverage guidance and Rust's own checks (panics,
# overflow checks, debug assertions) find what matters here, and it builds faster.
cargo +nightly fuzz build --sanitizer none
for target in $(cargo +nightly fuzz list); do
    echo "fuzz: $target for ${seconds}s"
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    if ! cargo +nightly fuzz run --sanitizer none "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz: $target crashed; its input is in fuzz/artifacts/$target" >&2
        exit 1
    fi
    grep -E "^Done" "$log"
done
echo "fuzz: all targets ran ${seconds}s without a crash"
