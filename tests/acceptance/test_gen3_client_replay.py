"""gen3-client's exact sequence of calls (FILES.md 1.7), replayed with plain
requests: gen3-client is Go and its modules are out of reach here, so this
is what it sends and what it reads, field by field (cdis-data-client
commonUtils.go, g3cmd/*.go, jwt/functions.go).

configure -> POST /user/credentials/api/access_token; every call retries
once after a 401 with a new token; upload (single, and multipart with the
parts' ETags); download-multiple from the explorer's manifest with HEAD and
Range resume when the URL is not an S3 presigned one.
"""

import hashlib
import os

import pytest
import requests

import support


class Gen3Client:
    """The calls of gen3-client, as it makes them."""

    def __init__(self, commons_url, credentials):
        self.url = commons_url
        self.credentials = credentials
        self.token = None

    def configure(self):
        # `gen3-client configure --profile --cred --apiendpoint`
        reply = requests.post(
            self.url + "/user/credentials/api/access_token",
            json={"api_key": self.credentials["api_key"], "key_id": self.credentials["key_id"]},
        )
        assert reply.status_code == 200, reply.text
        self.token = reply.json()["access_token"]

    def call(self, method, path, **kw):
        """One call; after a 401, a new token and one retry (jwt/functions.go)."""
        headers = {"Authorization": "Bearer %s" % self.token}
        reply = requests.request(method, self.url + path, headers=headers, **kw)
        if reply.status_code == 401:
            self.configure()
            headers = {"Authorization": "Bearer %s" % self.token}
            reply = requests.request(method, self.url + path, headers=headers, **kw)
        return reply

    def upload_single(self, name, content):
        reply = self.call("POST", "/user/data/upload", json={"file_name": name})
        assert reply.status_code == 201, reply.text
        answer = reply.json()
        put = requests.put(answer["url"], data=content, headers={"Content-Length": str(len(content))})
        assert put.status_code == 200, put.text  # gen3-client fails on anything else
        return answer["guid"]

    def upload_multipart(self, name, content, part_size):
        reply = self.call("POST", "/user/data/multipart/init", json={"file_name": name})
        assert reply.status_code == 201, reply.text
        guid, upload_id = reply.json()["guid"], reply.json()["uploadId"]
        key = "%s/%s" % (guid, name)
        parts = []
        chunks = [content[i : i + part_size] for i in range(0, len(content), part_size)]
        for number, chunk in enumerate(chunks, start=1):
            reply = self.call(
                "POST",
                "/user/data/multipart/upload",
                json={"key": key, "uploadId": upload_id, "partNumber": number},
            )
            assert reply.status_code == 200, reply.text
            put = requests.put(reply.json()["presigned_url"], data=chunk)
            assert put.status_code == 200, put.text
            parts.append({"PartNumber": number, "ETag": put.headers["ETag"]})
        parts.sort(key=lambda p: p["PartNumber"])
        reply = self.call(
            "POST",
            "/user/data/multipart/complete",
            json={"key": key, "uploadId": upload_id, "parts": parts},
        )
        return guid, reply

    def download(self, entry, folder, partial=b""):
        """`download-multiple`'s steps for one manifest entry."""
        guid = entry["object_id"]
        record = self.call("GET", "/index/index/%s" % guid)
        assert record.status_code == 200, record.text
        record = record.json()
        name, size = record["file_name"], record["size"]
        assert record["urls"], record
        signed = self.call("GET", "/user/data/download/%s" % guid)
        assert signed.status_code == 200, signed.text
        url = signed.json()["url"]
        path = os.path.join(folder, name)
        resumable = "X-Amz-Signature" not in url and "X-Goog-Signature" not in url
        if resumable and partial:
            with open(path, "wb") as fh:
                fh.write(partial)
            head = requests.head(url)
            assert head.status_code == 200
            assert head.headers["Accept-Ranges"] == "bytes"
            assert int(head.headers["Content-Length"]) == size
            got = requests.get(url, headers={"Range": "bytes=%d-" % len(partial)})
            assert got.status_code == 206, got.status_code
            with open(path, "ab") as fh:
                fh.write(got.content)
        else:
            got = requests.get(url)
            assert got.status_code == 200
            with open(path, "wb") as fh:
                fh.write(got.content)
        return path


@pytest.fixture
def client(commons_url, credentials):
    client = Gen3Client(commons_url, credentials)
    client.configure()
    return client


def test_configure_auth_and_a_retry_after_401(client):
    user = client.call("GET", "/user/user")
    assert user.status_code == 200
    assert "authz" in user.json()
    client.token = "expired.or.garbage"
    again = client.call("GET", "/user/user")
    assert again.status_code == 200, "a new token after the 401"


def test_upload_single_and_multipart_then_download_multiple(client, index, tmp_path):
    single = os.urandom(200_000)
    big = os.urandom((5 << 20) + 123_456)
    suffix = support.unique_suffix()
    first = client.upload_single("single-%s.bin" % suffix, single)
    second, done = client.upload_multipart("multi-%s.bin" % suffix, big, part_size=5 << 20)
    assert done.status_code == 200, done.text
    assert done.json() == {"message": "OK"}
    for guid, content in ((first, single), (second, big)):
        record = index.get_record(guid)
        assert record["size"] == len(content)
        assert record["hashes"]["md5"] == hashlib.md5(content).hexdigest()

    # The explorer's "Download Manifest" format, and a partial first file.
    manifest = [
        {"object_id": first, "file_name": "single-%s.bin" % suffix, "file_size": len(single)},
        {"object_id": second, "file_name": "multi-%s.bin" % suffix, "file_size": len(big)},
    ]
    path = client.download(manifest[0], str(tmp_path), partial=single[:1000])
    assert open(path, "rb").read() == single
    path = client.download(manifest[1], str(tmp_path))
    assert open(path, "rb").read() == big

    for guid in (first, second):
        assert client.call("DELETE", "/user/data/%s" % guid).status_code == 204


def test_a_part_etag_that_is_not_the_parts_is_refused(client, index):
    suffix = support.unique_suffix()
    content = os.urandom((5 << 20) + 10)
    reply = client.call("POST", "/user/data/multipart/init", json={"file_name": "bad-%s.bin" % suffix})
    guid, upload_id = reply.json()["guid"], reply.json()["uploadId"]
    key = "%s/bad-%s.bin" % (guid, suffix)
    etags = []
    for number, chunk in enumerate((content[: 5 << 20], content[5 << 20 :]), start=1):
        url = client.call(
            "POST", "/user/data/multipart/upload", json={"key": key, "uploadId": upload_id, "partNumber": number}
        ).json()["presigned_url"]
        etags.append(requests.put(url, data=chunk).headers["ETag"])
    wrong = [{"PartNumber": 1, "ETag": etags[1]}, {"PartNumber": 2, "ETag": etags[0]}]
    reply = client.call(
        "POST", "/user/data/multipart/complete", json={"key": key, "uploadId": upload_id, "parts": wrong}
    )
    assert reply.status_code == 409, reply.text
    record = index.get_record(guid)
    assert record["size"] is None and not record["hashes"], "nothing indexed"
    assert client.call("DELETE", "/user/data/%s" % guid).status_code == 204
