#!/usr/bin/env bash
# Dictionary conformance: for every reference dictionary (../shared), the
# bundled one and the test dictionaries in tests/dictionaries, the node
# schemas Commons serves must equal what Gen3's own loader (dictionaryutils,
# pinned in tests/conformance/requirements.txt) makes of the same folder.
#
# Uses COMMONS_BIN, or builds the debug binary. Arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
suite="$repo/tests/conformance"

if [[ -n ${COMMONS_BIN:-} ]]; then
    bin=$(realpath "$COMMONS_BIN")
else
    (cd "$repo" && cargo build)
    bin="${CARGO_TARGET_DIR:-$repo/target}/debug/commons"
fi
[[ -x $bin ]] || { echo "conformance: no executable at $bin" >&2; exit 1; }

venv="$repo/.venv-conformance"
python=${PYTHON:-python3}
want=$({ cat "$suite/requirements.txt"; "$python" --version; } | sha256sum | cut -d' ' -f1)
if [[ $(cat "$venv/.requirements.sha256" 2>/dev/null) != "$want" ]] \
    || ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "conformance: creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$suite/requirements.txt"
    echo "$want" >"$venv/.requirements.sha256"
fi

cd "$suite"
COMMONS_BIN=$bin "$venv/bin/python" -m pytest -q "$@"
