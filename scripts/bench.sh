#!/usr/bin/env bash
# Regenerate the figures of BENCHMARKS.md: runs the end-to-end benchmark
# (benches/commons.rs) on SQLite and PostgreSQL and replaces the "Results"
# section of BENCHMARKS.md with its report. BENCH_SUBJECTS sets the size.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The data-file figures are measured beside nginx (Debian's package) serving
# the same file, and presigned URLs per second with wrk.
if ! [[ -x /usr/sbin/nginx ]] || ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nginx-light wrk
fi
cargo bench --bench commons
report=target/benchmarks.md
python3 - "$report" <<'PY'
import sys, datetime
report = open(sys.argv[1]).read().strip()
text = open("BENCHMARKS.md").read()
head, marker, _ = text.partition("## Results")
stamp = datetime.date.today().isoformat()
open("BENCHMARKS.md", "w").write(head + marker + "\n\nMeasured " + stamp + " with `scripts/bench.sh`.\n\n" + report + "\n")
PY
echo "BENCHMARKS.md updated"
