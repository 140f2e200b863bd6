#!/usr/bin/env bash
# Run the Gen3-compatibility acceptance suites, driven by the real gen3 SDK,
# against one fresh Commons server on a free port: first the shared suite
# (../shared/acceptance, read-only), then this repository's file-index suite
# (tests/acceptance), with the same environment. The run fails if either fails.
#
# Usage: scripts/acceptance.sh [--database-url URL] [--profile-credentials] [--s3] [--] [pytest args...]
#   --profile-credentials  COMMONS_CREDENTIALS is an API key the admin creates
#                          through the profile API (password login, then
#                          POST /user/credentials/api/), not the bootstrap file
#   --s3                   keep data files in a bucket of an S3-compatible
#                          server (s3s-fs, `cargo install s3s-fs --features
#                          binary`) started for the run, not on local disk
#   COMMONS_BIN=path  use this binary instead of running `cargo build --release`
#   CI=true           a skipped test fails the run (CI must have every service)
# Arguments other than --database-url and --profile-credentials are passed
# through to pytest:
#   - an argument naming a file or folder of one suite (relative to that suite,
#     or absolute; `::test` suffixes allowed) goes to that suite only, and when
#     any such path is given only the suites it names run
#     (`test_auth.py` runs the shared suite's file, `test_index_sdk.py` ours);
#   - every other argument (options such as `-k graphql`, `-x`, `-q`) goes to
#     both suites. A suite in which such a filter selects nothing counts as
#     empty, not failed, as long as the other suite ran tests.
set -euo pipefail

die() { echo "acceptance: $*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shared/ sits beside the repo, here and in CI's fresh clone alike.
suite="$repo/../shared/acceptance"
dictionary="$repo/../shared/reference/dictionaries/gdcdictionary"
[[ -f $suite/requirements.txt ]] || die "suite not found at $suite"
[[ -d $dictionary ]] || die "gdcdictionary not found at $dictionary"
suite=$(cd "$suite" && pwd)
dictionary=$(cd "$dictionary" && pwd)
# The file-index suite of this repository (same venv and requirements).
own_suite="$repo/tests/acceptance"
[[ -f $own_suite/conftest.py ]] || die "suite not found at $own_suite"

# ---------------------------------------------------------------- arguments
database_url=
profile_credentials=false
s3=false
pytest_args=()
while (($#)); do
    case $1 in
        --database-url) (($# >= 2)) || die "--database-url needs a value"
                        database_url=$2; shift 2 ;;
        --database-url=*) database_url=${1#*=}; shift ;;
        --profile-credentials) profile_credentials=true; shift ;;
        --s3) s3=true; shift ;;
        --) shift; pytest_args+=("$@"); break ;;
        *) pytest_args+=("$1"); shift ;;
    esac
done
# Passed to `serve` and to every CLI command, so all of them use one database.
db_args=()
if [[ -n $database_url ]]; then db_args=(--database-url "$database_url"); fi

# -------------------------------------------------------------------- binary
if [[ -n ${COMMONS_BIN:-} ]]; then
    bin=$(realpath "$COMMONS_BIN")
else
    echo "acceptance: building the release binary"
    (cd "$repo" && cargo build --release)
    bin="${CARGO_TARGET_DIR:-$repo/target}/release/commons"
fi
[[ -x $bin ]] || die "no executable at $bin"

# ---------------------------------------------------------------------- venv
# Reused while requirements.txt and the Python version are unchanged.
venv="$repo/.venv-acceptance"
python=${PYTHON:-python3}
want=$({ cat "$suite/requirements.txt"; "$python" --version; } | sha256sum | cut -d' ' -f1)
if [[ $(cat "$venv/.requirements.sha256" 2>/dev/null) != "$want" ]] \
    || ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "acceptance: creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$suite/requirements.txt"
    echo "$want" >"$venv/.requirements.sha256"
fi

# -------------------------------------------------------------------- server
work=$(mktemp -d "${TMPDIR:-/tmp}/commons-acceptance.XXXXXX")
data="$work/data"
log="$work/server.log"
junit="$work/junit.xml"
mkdir "$data"
server_pid=
s3_pid=

cleanup() {
    local rc=$?
    if [[ -n $s3_pid ]]; then kill "$s3_pid" 2>/dev/null || true; fi
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in {1..50}; do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if ((rc != 0)); then
        if [[ -s $log ]]; then
            echo "---- last 60 lines of the server log ($log) ----" >&2
            tail -n 60 "$log" >&2
        fi
        echo "acceptance: FAILED (exit $rc); files kept in $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    "$venv/bin/python" -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
url="http://127.0.0.1:$port"

storage_args=()
export COMMONS_STORAGE_KIND=local
if $s3; then
    command -v s3s-fs >/dev/null 2>&1 \
        || die "--s3 needs s3s-fs (cargo install s3s-fs --version 0.14.1 --features binary)"
    s3_port=$(free_port)
    mkdir -p "$work/s3/commons-acceptance"
    s3s-fs --host 127.0.0.1 --port "$s3_port" --access-key AKACCEPTANCE --secret-key SKACCEPTANCE \
        "$work/s3" </dev/null >"$work/s3.log" 2>&1 &
    s3_pid=$!
    export AWS_ACCESS_KEY_ID=AKACCEPTANCE AWS_SECRET_ACCESS_KEY=SKACCEPTANCE
    storage_args=(--storage s3://commons-acceptance/data --s3-endpoint "http://127.0.0.1:$s3_port" --s3-path-style)
    export COMMONS_STORAGE_KIND=s3
    echo "acceptance: data files go to s3://commons-acceptance/data on s3s-fs at 127.0.0.1:$s3_port"
fi

echo "acceptance: starting $bin on $url (data in $data)"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --dictionary "$dictionary" \
    --public-url "$url" "${db_args[@]}" "${storage_args[@]}" </dev/null >"$log" 2>&1 &
server_pid=$!

healthy() {
    "$venv/bin/python" - "$url/_status" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}
deadline=$((SECONDS + 60))
until healthy; do
    kill -0 "$server_pid" 2>/dev/null || die "the server exited during startup"
    ((SECONDS < deadline)) || die "the server did not answer $url/_status within 60 s"
    sleep 0.5
done
[[ -f $data/credentials.json ]] || die "the server did not write $data/credentials.json"

# A second user with no grants, for the access-control tests. Its key can only
# be minted from the command line, as with fence's fence-create.
"$bin" users add noaccess --data-dir "$data" "${db_args[@]}"
"$bin" keys create noaccess --data-dir "$data" "${db_args[@]}" >"$work/noaccess.json"

credentials=$data/credentials.json
if $profile_credentials; then
    # As a user would from the portal's profile page: log in, create a key.
    password=$("$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))')
    "$bin" users passwd admin --data-dir "$data" "${db_args[@]}" <<<"$password"
    credentials=$work/profile-credentials.json
    "$venv/bin/python" - "$url" "$password" "$credentials" <<'PY'
import json, sys, requests
url, password, out = sys.argv[1:]
login = requests.post(url + "/user/login/local", json={"username": "admin", "password": password}, timeout=30)
login.raise_for_status()
session = {"Authorization": "Bearer " + login.json()["access_token"]}
key = requests.post(url + "/user/credentials/api/", json={}, headers=session, timeout=30)
key.raise_for_status()
with open(out, "w") as fh:
    json.dump(key.json(), fh)
PY
    echo "acceptance: COMMONS_CREDENTIALS is a key created through the profile API"
fi

export COMMONS_URL=$url
export COMMONS_CREDENTIALS=$credentials
# For tests that start a second server on the same database and storage
# (HTTPS for `gen3 drs-pull`): the binary and the arguments of this one.
export COMMONS_BIN=$bin
export COMMONS_SERVE_ARGS="--data-dir $data --dictionary $dictionary ${db_args[*]} ${storage_args[*]}"
export COMMONS_CREDENTIALS_NOACCESS=$work/noaccess.json
export COMMONS_ARBORIST_URL=$url/authz
# Nothing may be written into the read-only shared folder; as root the
# read-only bits would not stop pytest's cache or Python's __pycache__.
export PYTHONDONTWRITEBYTECODE=1

# -------------------------------------------------------------------- suites
# Which suite an argument belongs to: "shared", "own", or "" (both).
suite_of() {
    local arg=$1 target=${1%%::*} name dir abs
    [[ $arg != -* && -n $target ]] || return 0
    for name in shared own; do
        if [[ $name == shared ]]; then dir=$suite; else dir=$own_suite; fi
        dir=$(realpath "$dir")
        if [[ $target == /* ]]; then abs=$target; else abs=$dir/$target; fi
        [[ -e $abs ]] || continue
        abs=$(realpath "$abs")
        if [[ $abs == "$dir" || $abs == "$dir"/* ]]; then
            echo "$name"
            return 0
        fi
    done
}
shared_args=()
own_args=()
shared_paths=0
own_paths=0
for arg in ${pytest_args[@]+"${pytest_args[@]}"}; do
    case $(suite_of "$arg") in
        shared) shared_args+=("$arg"); shared_paths=$((shared_paths + 1)) ;;
        own) own_args+=("$arg"); own_paths=$((own_paths + 1)) ;;
        *) shared_args+=("$arg"); own_args+=("$arg") ;;
    esac
done
run_shared=true
run_own=true
if ((shared_paths + own_paths > 0)); then
    ((shared_paths > 0)) || run_shared=false
    ((own_paths > 0)) || run_own=false
fi

# Prints "<passed> <failed> <skipped>" from a junit file (nothing if absent).
junit_counts() {
    [[ -f $1 ]] || return 0
    "$venv/bin/python" - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
print(n["tests"] - n["failures"] - n["errors"] - n["skipped"], n["failures"] + n["errors"], n["skipped"])
PY
}

passed=0
failed=0
skipped=0
rc=0           # first failing pytest exit status (5, "no tests", handled below)
empty=()       # suites that collected no test
ran=0          # suites that ran at least one test

# run_suite <label> <dir> <junit> [pytest args...]
run_suite() {
    local label=$1 dir=$2 junit=$3 suite_rc=0 counts p=0 f=0 s=0
    shift 3
    echo "acceptance: running the $label suite in $dir"
    (cd "$dir" && "$venv/bin/pytest" -p no:cacheprovider -rs --junitxml="$junit" "$@") || suite_rc=$?
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "acceptance: the server died during the $label suite" >&2
        ((suite_rc)) || suite_rc=1
    fi
    counts=$(junit_counts "$junit")
    if [[ -n $counts ]]; then
        read -r p f s <<<"$counts"
        echo "acceptance: $label suite: $p passed, $f failed, $s skipped"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    if ((suite_rc == 5)); then
        empty+=("$label")
    else
        ran=$((ran + 1))
        if ((suite_rc != 0 && rc == 0)); then rc=$suite_rc; fi
    fi
}

if $run_shared; then
    run_suite shared "$suite" "$junit" ${shared_args[@]+"${shared_args[@]}"}
fi
if $run_own; then
    run_suite file-index "$own_suite" "$work/junit-index.xml" ${own_args[@]+"${own_args[@]}"}
fi
echo "acceptance: $passed passed, $failed failed, $skipped skipped"

# pytest exits 5 when it ran no test: never a pass. A suite left empty by a
# filter (-k ...) is fine only if arguments were given and another suite ran.
if ((${#empty[@]} > 0)); then
    if ((ran == 0)) || ((${#pytest_args[@]} == 0)); then
        die "pytest collected no tests in the ${empty[*]} suite(s) (check the arguments: ${pytest_args[*]:-none})"
    fi
    echo "acceptance: no test of the ${empty[*]} suite matched the arguments"
fi
((rc == 0)) || exit "$rc"
if [[ ${CI:-} == true ]] && ((skipped > 0)); then
    die "$skipped test(s) skipped; in CI every service must be available, so no test may be skipped"
fi
