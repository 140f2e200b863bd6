"""Commons serves every dictionary's node schemas as Gen3's own loader reads them.

For each dictionary, the node schemas of `/api/v0/submission/_dictionary/_all`
must equal what dictionaryutils makes of the same folder
(`DataDictionary(lazy=True)` then `load_data`, before `allow_nulls`), value for
value and type for type, Gen3's built-in `root` and `data_release` included.
"""

import datetime
import email.utils
import json
import math
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import warnings

import pytest
import requests

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from dictionaryutils import DataDictionary

REPO = pathlib.Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference" / "dictionaries"
SHARED_DOCUMENTS = {"_definitions", "_terms", "_settings", "metaschema"}


def schemas_folder(path):
    """The folder holding the YAML files (a datadictionary checkout keeps them in schemas/)."""
    return path / "schemas" if (path / "schemas").is_dir() else path


DICTIONARIES = sorted(p for p in REFERENCE.iterdir() if p.is_dir()) + [
    REPO / "dictionary",
    REPO / "tests" / "dictionaries" / "yaml11",
    REPO / "tests" / "dictionaries" / "refs",
]


def gen3_schemas(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        dictionary = DataDictionary(lazy=True, root_dir=str(folder))
        cwd = os.getcwd()
        try:
            dictionary.load_data(directory=str(folder))
        finally:
            os.chdir(cwd)
    return dictionary.schema


def as_served(value):
    """A loaded YAML value as JSON carries it: dates as a Flask service writes
    them, infinities as the largest finite number, NaN as null."""
    if isinstance(value, dict):
        return {k: as_served(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_served(v) for v in value]
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return email.utils.format_datetime(value.astimezone(datetime.timezone.utc), usegmt=True)
    if isinstance(value, datetime.date):
        midnight = datetime.datetime.combine(value, datetime.time(), datetime.timezone.utc)
        return email.utils.format_datetime(midnight, usegmt=True)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return math.copysign(sys.float_info.max, value)
    return value


def typed(value):
    """Makes types part of equality: in Python True == 1 and 1 == 1.0."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def first_difference(path, ours, theirs):
    if type(ours) is not type(theirs):
        return f"{path}: Commons {ours!r}, Gen3 {theirs!r}"
    if isinstance(ours, dict):
        for key in sorted(set(ours) | set(theirs)):
            if key not in ours or key not in theirs:
                return f"{path}/{key}: only in {'Commons' if key in ours else 'Gen3'}"
            found = first_difference(f"{path}/{key}", ours[key], theirs[key])
            if found:
                return found
        return None
    if isinstance(ours, list):
        if len(ours) != len(theirs):
            return f"{path}: {len(ours)} items in Commons, {len(theirs)} in Gen3"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            found = first_difference(f"{path}/{i}", a, b)
            if found:
                return found
        return None
    return None if ours == theirs else f"{path}: Commons {ours!r}, Gen3 {theirs!r}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_all(dictionary):
    """Starts Commons on `dictionary` and reads `_dictionary/_all`."""
    binary = os.environ["COMMONS_BIN"]
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        log = open(pathlib.Path(data) / "server.log", "w+")
        server = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
             "--dictionary", str(dictionary), "--bootstrap-admin", "false"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"Commons refused {dictionary}:\n{log.read()[-3000:]}")
                try:
                    if requests.get(url + "/_status", timeout=2).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "Commons did not start within 60 s"
                time.sleep(0.2)
            response = requests.get(url + "/api/v0/submission/_dictionary/_all", timeout=30)
            assert response.status_code == 200, response.text
            return response.json()
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()


@pytest.mark.parametrize("dictionary", DICTIONARIES, ids=lambda p: p.name)
def test_node_schemas_equal_gen3s(dictionary):
    expected = as_served(gen3_schemas(schemas_folder(dictionary)))
    served = served_all(dictionary)
    nodes = {k: v for k, v in served.items() if k not in SHARED_DOCUMENTS}
    assert set(nodes) == set(expected)
    assert {"root", "data_release"} <= set(nodes)
    for node in sorted(expected):
        difference = first_difference(node, typed(nodes[node]), typed(expected[node]))
        assert difference is None, difference
