#!/usr/bin/env bash
# Run the Gen3-compatibility acceptance suite (../shared/acceptance, read-only,
# driven by the real gen3 SDK) against a fresh Commons server on a free port.
#
# Usage: scripts/acceptance.sh [--database-url URL] [--profile-credentials] [--] [pytest args...]
#   --profile-credentials  COMMONS_CREDENTIALS is an API key the admin creates
#                          through the profile API (password login, then
#                          POST /user/credentials/api/), not the bootstrap file
#   COMMONS_BIN=path  use this binary instead of running `cargo build --release`
#   CI=true           a skipped test fails the run (CI must have every service)
# Arguments other than --database-url are passed through to pytest
# (e.g. `-k graphql` or `test_auth.py`; paths are relative to the suite).
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

# ---------------------------------------------------------------- arguments
database_url=
profile_credentials=false
pytest_args=()
while (($#)); do
    case $1 in
        --database-url) (($# >= 2)) || die "--database-url needs a value"
                        database_url=$2; shift 2 ;;
        --database-url=*) database_url=${1#*=}; shift ;;
        --profile-credentials) profile_credentials=true; shift ;;
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

cleanup() {
    local rc=$?
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

port=$("$venv/bin/python" -c \
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"

echo "acceptance: starting $bin on $url (data in $data)"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --dictionary "$dictionary" \
    --public-url "$url" "${db_args[@]}" </dev/null >"$log" 2>&1 &
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
export COMMONS_CREDENTIALS_NOACCESS=$work/noaccess.json
export COMMONS_ARBORIST_URL=$url/authz
# Nothing may be written into the read-only shared folder; as root the
# read-only bits would not stop pytest's cache or Python's __pycache__.
export PYTHONDONTWRITEBYTECODE=1

# --------------------------------------------------------------------- suite
echo "acceptance: running the suite in $suite"
rc=0
(cd "$suite" && "$venv/bin/pytest" -p no:cacheprovider -rs --junitxml="$junit" \
    "${pytest_args[@]}") || rc=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "acceptance: the server died during the run" >&2
    ((rc)) || rc=1
fi

skipped=0
if [[ -f $junit ]]; then
    counts=$("$venv/bin/python" - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
print(n["tests"] - n["failures"] - n["errors"] - n["skipped"], n["failures"] + n["errors"], n["skipped"])
PY
    )
    read -r passed failed skipped <<<"$counts"
    echo "acceptance: $passed passed, $failed failed, $skipped skipped"
fi

# pytest exits 5 when it ran no test: never a pass for this suite.
((rc != 5)) || die "pytest collected no tests (check the arguments: ${pytest_args[*]:-none})"
((rc == 0)) || exit "$rc"
if [[ ${CI:-} == true ]] && ((skipped > 0)); then
    die "$skipped test(s) skipped; in CI every service must be available, so no test may be skipped"
fi
