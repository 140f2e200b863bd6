"""`gen3 objects manifest publish` and `gen3 objects manifest read` (the gen3 CLI).

FILES.md 1.7: publish reads a TSV (guid, md5, size, acl, authz, urls,
file_name, prev_guid), creates records it does not find and patches the ones
it does (POST /index/index/, PUT ?rev=, POST /index/index/<prev_guid> for a
new version); read pages through GET /index/index?page=&limit=1024 after
GET /index/_stats and writes a CSV manifest.
"""

import csv
import os
import shutil
import subprocess
import sys
import uuid

import pytest

import support

COLUMNS = ["guid", "md5", "size", "acl", "authz", "urls", "file_name"]


def _gen3_executable():
    # The CLI installed beside the interpreter running the suite (the venv's).
    here = os.path.dirname(sys.executable)
    exe = shutil.which("gen3", path=here) or shutil.which("gen3")
    if not exe:
        pytest.fail("the gen3 CLI is not installed beside %s" % sys.executable, pytrace=False)
    return exe


def _gen3(credentials_path, commons_url, cwd, *args):
    cmd = [_gen3_executable(), "--auth", credentials_path, "--endpoint", commons_url] + list(args)
    proc = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "%s exited %s\nstdout: %s\nstderr: %s" % (
        " ".join(args[:3]),
        proc.returncode,
        proc.stdout[-2000:],
        proc.stderr[-4000:],
    )
    return proc


def _write_tsv(path, columns, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def _read_table(path, delimiter):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter=delimiter))


@pytest.fixture(scope="module")
def published(tmp_path_factory, credentials_path, commons_url, index, index_cleanup, program):
    """Publish one manifest, then a second one that patches a row and adds a version."""
    work = tmp_path_factory.mktemp("manifest")
    tag = support.unique_suffix()
    base = "/programs/%s/projects/" % program
    rows = {
        "a": {
            "guid": str(uuid.uuid4()),
            "md5": support.random_md5(),
            "size": "111",
            "acl": "['Open']",
            "authz": base + "pub",
            "urls": "s3://pub-%s/a.txt" % tag,
            "file_name": "a-%s.txt" % tag,
        },
        "b": {
            "guid": "",  # the server assigns the did
            "md5": support.random_md5(),
            "size": "222",
            "acl": "phsA phsB",
            "authz": base + "pub " + base + "other",
            "urls": "s3://pub-%s/b.txt gs://pub-%s/b.txt" % (tag, tag),
            "file_name": "b-%s.txt" % tag,
        },
        "c": {
            "guid": str(uuid.uuid4()),
            "md5": support.random_md5(),
            "size": "0",
            "acl": "",
            "authz": base + "pub",
            "urls": "s3://pub-%s/c.txt" % tag,
            "file_name": "c-%s.txt" % tag,
        },
    }
    first = work / "manifest.tsv"
    _write_tsv(first, COLUMNS, rows.values())
    out1 = work / "published.tsv"
    proc1 = _gen3(
        credentials_path, commons_url, work,
        "objects", "manifest", "publish", str(first), "--thread-num", "1", "--out-manifest-file", str(out1),
    )
    assert out1.exists(), "publish wrote no output manifest:\n%s\n%s" % (proc1.stdout[-2000:], proc1.stderr[-2000:])
    out_rows = _read_table(out1, "\t")
    assert len(out_rows) == 3, out_rows
    guid_by_md5 = {r["md5"]: r["guid"] for r in out_rows}
    for key, row in rows.items():
        assert guid_by_md5.get(row["md5"]), "row %s has no guid in the output manifest: %r\n%s" % (
            key, out_rows, proc1.stderr[-3000:],
        )
        row["did"] = guid_by_md5[row["md5"]]
        index_cleanup.append(row["did"])
    first_state = {key: index.get_record(row["did"]) for key, row in rows.items()}

    # Second manifest: row a moves and changes acl (patch); row d is a new
    # version of a (prev_guid column).
    patched_a = dict(rows["a"], urls="s3://pub-%s/a-moved.txt" % tag, acl="phsZ")
    patched_a.pop("did")
    row_d = {
        "guid": "",
        "md5": support.random_md5(),
        "size": "444",
        "acl": "phsZ",
        "authz": base + "pub",
        "urls": "s3://pub-%s/a-v2.txt" % tag,
        "file_name": "a-%s.txt" % tag,
        "prev_guid": rows["a"]["guid"],
    }
    second = work / "manifest2.tsv"
    _write_tsv(second, COLUMNS + ["prev_guid"], [dict(patched_a, prev_guid=""), row_d])
    out2 = work / "published2.tsv"
    proc2 = _gen3(
        credentials_path, commons_url, work,
        "objects", "manifest", "publish", str(second), "--thread-num", "1", "--out-manifest-file", str(out2),
    )
    out_rows2 = _read_table(out2, "\t")
    d_guid = {r["md5"]: r["guid"] for r in out_rows2}.get(row_d["md5"])
    assert d_guid, "the new-version row has no guid: %r\n%s" % (out_rows2, proc2.stderr[-3000:])
    index_cleanup.append(d_guid)
    row_d["did"] = d_guid
    rows["d"] = row_d
    return {"rows": rows, "first": first_state, "work": work, "tag": tag}


def test_publish_creates_records(published, index):
    rows = published["rows"]
    b, c = rows["b"], rows["c"]
    assert published["first"]["a"] is not None, "row a was not indexed"
    # row a as first published
    a1 = published["first"]["a"]
    assert a1["did"] == rows["a"]["guid"]
    assert a1["hashes"] == {"md5": rows["a"]["md5"]}
    assert a1["size"] == 111
    assert a1["acl"] == ["*"]  # "['Open']" means public
    assert a1["urls"] == ["s3://pub-%s/a.txt" % published["tag"]]
    # row b: did assigned by the server, lists split on spaces
    rec = index.get_record(b["did"])
    assert rec is not None
    assert support.is_did(rec["did"])
    assert rec["hashes"] == {"md5": b["md5"]}
    assert rec["size"] == 222
    assert sorted(rec["acl"]) == ["phsA", "phsB"]
    assert sorted(rec["authz"]) == sorted(b["authz"].split(" "))
    assert sorted(rec["urls"]) == sorted(b["urls"].split(" "))
    assert rec["file_name"] == b["file_name"]
    assert index.get_with_params({"hashes": {"md5": b["md5"]}, "size": 222})["did"] == b["did"]
    # row c: given guid, size 0, no acl
    rec = index.get_record(c["guid"])
    assert rec is not None
    assert rec["size"] == 0
    assert rec["acl"] == []
    assert rec["authz"] == [c["authz"]]


def test_publish_patches_existing_record(published, index):
    rows, tag = published["rows"], published["tag"]
    before = published["first"]["a"]
    after = index.get_record(rows["a"]["guid"])
    assert after["rev"] != before["rev"]
    assert after["urls"] == ["s3://pub-%s/a-moved.txt" % tag]  # replaced, not appended
    assert after["acl"] == ["phsZ"]
    assert after["hashes"] == before["hashes"] and after["size"] == before["size"]


def test_publish_prev_guid_adds_a_version(published, index):
    rows = published["rows"]
    a, d = rows["a"], rows["d"]
    rec = index.get_record(d["did"])
    assert rec is not None
    assert rec["did"] != a["guid"]
    assert rec["hashes"] == {"md5": d["md5"]}
    assert rec["size"] == 444
    assert rec["baseid"] == published["first"]["a"]["baseid"]
    assert [v["did"] for v in index.get_versions(a["guid"])] == [a["guid"], d["did"]]
    assert index.get_latest_version(a["guid"])["did"] == d["did"]


def test_read_writes_every_record(published, credentials_path, commons_url, index):
    work = published["work"]
    out = work / "read-manifest.csv"
    count = index.get_stats()["fileCount"]
    proc = _gen3(
        credentials_path, commons_url, work,
        "objects", "manifest", "read", "--output-file", str(out), "--num-processes", "2",
        "--python-subprocess-command", sys.executable,
    )
    assert out.exists(), proc.stderr[-3000:]
    table = _read_table(out, ",")
    guids = [r["guid"] for r in table]
    assert len(guids) == len(set(guids)), "a record was written twice (pages overlap)"
    assert len(guids) == count, "read wrote %d rows, _stats says %d records" % (len(guids), count)
    by_guid = {r["guid"]: r for r in table}
    for key, row in published["rows"].items():
        rec = index.get_record(row["did"])
        line = by_guid.get(row["did"])
        assert line is not None, "record %s (%s) missing from the read manifest" % (key, row["did"])
        assert line["md5"] == rec["hashes"]["md5"]
        assert line["file_size"] == str(rec["size"])
        assert line["file_name"] == rec["file_name"]
        assert line["urls"] == " ".join(sorted(rec["urls"]))
        assert line["authz"] == " ".join(sorted(rec["authz"]))
        assert line["acl"] == " ".join(sorted(rec["acl"]))
