"""Gen3File of the gen3 SDK against fence's data endpoints (FILES.md 1.5,
1.7 and section 4 F2), over the local object store or an S3 bucket
(COMMONS_STORAGE_KIND, set by scripts/acceptance.sh): upload, the PUT of the
bytes, the record filled at once, download byte for byte, delete.
"""

import hashlib
import os

import pytest
import requests

import support

# Only bytes that pass through Commons (the local store) get a SHA-256.
LOCAL = os.environ.get("COMMONS_STORAGE_KIND", "local") == "local"


def tampered(url):
    """The URL with its signature (the last query value, in both stores'
    URLs) changed in its last digit."""
    return url[:-1] + ("0" if url[-1] != "0" else "1")


@pytest.fixture(scope="module")
def files(auth):
    from gen3.file import Gen3File

    return Gen3File(auth)


def _upload(files, content, file_name, **kw):
    answer = files.upload_file(file_name, **kw)
    assert support.is_did(answer["guid"]), answer
    put = requests.put(answer["url"], data=content)
    assert put.status_code == 200, put.text  # gen3-client needs 200
    assert put.headers["ETag"] == '"%s"' % hashlib.md5(content).hexdigest()
    return answer["guid"]


def test_upload_indexes_at_once_and_downloads_byte_for_byte(files, index, tmp_path):
    content = os.urandom(300_000)
    name = "upload-%s.bin" % support.unique_suffix()
    guid = _upload(files, content, name)
    record = index.get_record(guid)
    assert record["size"] == len(content)
    assert record["hashes"]["md5"] == hashlib.md5(content).hexdigest()
    if LOCAL:
        assert record["hashes"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert record["file_name"] == name

    signed = files.get_presigned_url(guid)
    got = requests.get(signed["url"])
    assert got.status_code == 200
    assert int(got.headers["content-length"]) == len(content)
    assert got.content == content

    assert files.download_single(guid, str(tmp_path)) is True
    assert (tmp_path / name).read_bytes() == content

    answer = files.delete_file_locations(guid)
    assert answer.status_code == 204, answer.text
    assert index.get_record(guid) is None
    assert requests.get(signed["url"]).status_code == 404


def test_a_location_of_another_protocol_is_gen3s_404(files, raw, commons_url):
    guid = _upload(files, b"abc", "p-%s.txt" % support.unique_suffix())
    other = "s3" if LOCAL else "gs"
    reply = raw.get("/user/data/download/%s?protocol=%s" % (guid, other))
    assert reply.status_code == 404
    assert "File %s does not have a location with specified protocol %s." % (guid, other) in reply.text
    assert files.delete_file_locations(guid).status_code == 204


def test_upload_to_an_existing_guid_and_into_a_project(files, index, module_project):
    answer = files.upload_file("first.txt")
    guid = answer["guid"]
    again = files.upload_file_to_guid(guid, "second.txt")
    assert requests.put(again["url"], data=b"second").status_code == 200
    record = index.get_record(guid)
    assert record["size"] == 6
    assert files.delete_file_locations(guid).status_code == 204

    authz = "/programs/%s/projects/%s" % (module_project.program, module_project.code)
    guid = _upload(files, b"project bytes", "in-project.txt", authz=[authz])
    record = index.get_record(guid)
    assert record["authz"] == [authz]
    assert record["uploader"] is None
    assert files.delete_file_locations(guid).status_code == 204


def test_refusals(files, raw, noaccess_raw):
    reply = noaccess_raw.post("/user/data/upload", json={"file_name": "x.txt"})
    assert reply.status_code == 403
    guid = _upload(files, b"mine", "mine-%s.txt" % support.unique_suffix())
    assert noaccess_raw.get("/user/data/download/%s" % guid).status_code == 403
    assert noaccess_raw.delete("/user/data/%s" % guid).status_code == 403
    zero = raw.get("/user/data/download/%s?expires_in=0" % guid)
    assert zero.status_code == 400
    signed = raw.get("/user/data/download/%s" % guid).json()["url"]
    assert requests.get(tampered(signed)).status_code == 403
    assert files.delete_file_locations(guid).status_code == 204


def test_gen3_file_download_single_cli(files, credentials_path, commons_url, tmp_path):
    import shutil
    import subprocess
    import sys

    content = os.urandom(50_000)
    name = "cli-%s.bin" % support.unique_suffix()
    guid = _upload(files, content, name)
    exe = shutil.which("gen3", path=os.path.dirname(sys.executable)) or shutil.which("gen3")
    proc = subprocess.run(
        [exe, "--auth", credentials_path, "--endpoint", commons_url, "file", "download-single", guid,
         "--path", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / name).read_bytes() == content
    assert files.delete_file_locations(guid).status_code == 204
