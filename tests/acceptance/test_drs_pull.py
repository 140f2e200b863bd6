"""`gen3 drs-pull` (object, objects, manifest, ls --access) against Commons
serving HTTPS itself (FILES.md 1.7, section 4 F3): drs-pull only speaks
https://, so a second server with a self-signed certificate runs on the same
database and storage as the suite's one (and under its public URL, so the
tokens of one are the tokens of the other).
"""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest
import requests

import support


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def https_host(tmp_path_factory, commons_url):
    """host:port of a Commons serving HTTPS; REQUESTS_CA_BUNDLE trusts it."""
    binary = os.environ.get("COMMONS_BIN")
    serve_args = os.environ.get("COMMONS_SERVE_ARGS")
    if not binary or serve_args is None:
        pytest.fail("COMMONS_BIN and COMMONS_SERVE_ARGS come from scripts/acceptance.sh", pytrace=False)
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    port = _free_port()
    log = open(folder / "server.log", "wb")
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:%d" % port, "--public-url", commons_url,
         "--tls-cert", str(cert), "--tls-key", str(key)] + shlex.split(serve_args),
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    deadline = time.time() + 60
    while True:
        assert server.poll() is None, (folder / "server.log").read_text()
        try:
            if requests.get("https://127.0.0.1:%d/_status" % port, verify=str(cert)).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.time() < deadline, "the HTTPS server did not start"
        time.sleep(0.2)
    # Plain HTTP to the TLS port gets no answer.
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:%d/_status" % port, timeout=5)
    old = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
    yield "127.0.0.1:%d" % port
    if old is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = old
    server.terminate()
    server.wait(timeout=30)


def _gen3(credentials_path, host, cwd, *args):
    here = os.path.dirname(sys.executable)
    exe = shutil.which("gen3", path=here) or shutil.which("gen3")
    cmd = [exe, "--auth", credentials_path, "--endpoint", host, "--commons_url", host] + list(args)
    proc = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, "%s exited %s\nstdout: %s\nstderr: %s" % (
        " ".join(args[:2]), proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:],
    )
    return proc


@pytest.fixture(scope="module")
def stored(auth):
    """Two uploaded files: [(guid, name, bytes)]."""
    from gen3.file import Gen3File

    files = Gen3File(auth)
    out = []
    for n in range(2):
        content = os.urandom(100_000 + n)
        name = "drs-%d-%s.bin" % (n, support.unique_suffix())
        answer = files.upload_file(name)
        assert requests.put(answer["url"], data=content).status_code == 200
        out.append((answer["guid"], name, content))
    yield out
    for guid, _, _ in out:
        files.delete_file_locations(guid)


def test_drs_pull_object_and_objects(credentials_path, https_host, stored, tmp_path):
    guid, name, content = stored[0]
    proc = _gen3(credentials_path, https_host, tmp_path, "drs-pull", "object", guid,
                 "--output-dir", str(tmp_path / "one"), "--no-progress")
    assert json.loads(proc.stdout.strip().splitlines()[-1])["succeeded"] == [guid]
    assert (tmp_path / "one" / name).read_bytes() == content

    guids = [g for g, _, _ in stored]
    proc = _gen3(credentials_path, https_host, tmp_path, "drs-pull", "objects", *guids,
                 "--output-dir", str(tmp_path / "many"), "--no-progress")
    assert sorted(json.loads(proc.stdout.strip().splitlines()[-1])["succeeded"]) == sorted(guids)
    for _, name, content in stored:
        assert (tmp_path / "many" / name).read_bytes() == content


def test_drs_pull_manifest_and_ls_access(credentials_path, https_host, stored, tmp_path):
    manifest = [
        {"object_id": g, "file_name": n, "file_size": len(c), "md5sum": hashlib.md5(c).hexdigest()}
        for g, n, c in stored
    ]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    _gen3(credentials_path, https_host, tmp_path, "drs-pull", "manifest", str(path),
          str(tmp_path / "out"), "--no-progress")
    for _, name, content in stored:
        assert (tmp_path / "out" / name).read_bytes() == content

    listing = _gen3(credentials_path, https_host, tmp_path, "drs-pull", "ls", str(path), "--access")
    # drs-pull prints "Access for <host>:" and the caller's resources, or "No access".
    printed = listing.stdout + listing.stderr
    assert "Access for %s:" % https_host.split(":")[0] in printed, printed
    assert "No access" not in printed, printed
