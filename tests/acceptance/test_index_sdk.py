"""Every Gen3Index method of the gen3 SDK against the file index under /index.

Contract: FILES.md 1.2 (record), 1.3 (HTTP API), 1.7 (what the SDK calls),
1.8 (traps) and section 4 F1.
"""

import datetime
import uuid

import pytest
import requests

import support

BATCH = 30  # records in the paging fixture; with limit 7 paging must happen


def _create(index, cleanup, **kw):
    kw.setdefault("hashes", {"md5": support.random_md5()})
    kw.setdefault("size", support.random_size())
    rec = index.create_record(**kw)
    cleanup.append(rec["did"])
    return rec


def _iso(value):
    """indexd dates are ISO 8601 (naive UTC); accept a trailing Z or offset too."""
    assert isinstance(value, str) and value, value
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed


@pytest.fixture(scope="module")
def batch(index, index_cleanup):
    """30 records sharing one md5 and size, so a hash listing finds exactly them."""
    md5 = support.random_md5()
    size = support.random_size()
    tag = support.unique_suffix()
    dids = []
    for i in range(BATCH):
        rec = _create(
            index,
            index_cleanup,
            hashes={"md5": md5},
            size=size,
            urls=["s3://batch-%s/%02d.bin" % (tag, i)],
            file_name="batch-%s-%02d.bin" % (tag, i),
        )
        dids.append(rec["did"])
    return {"md5": md5, "size": size, "dids": dids}


# ------------------------------------------------------------------ status


def test_is_healthy(index, raw):
    assert index.is_healthy() is True
    # FILES.md 1.7/1.8: the SDK compares the body with "Healthy" exactly.
    resp = raw.get("/index/_status", anonymous=True)
    assert resp.status_code == 200
    assert resp.text == "Healthy"


def test_get_version(index):
    version = index.get_version()
    assert isinstance(version, dict), version
    assert isinstance(version.get("version"), str) and version["version"], version


def test_get_stats_counts_records(index, index_cleanup):
    before = index.get_stats()
    assert isinstance(before.get("fileCount"), int) and before["fileCount"] >= 0, before
    assert isinstance(before.get("totalFileSize"), int) and before["totalFileSize"] >= 0, before
    rec = _create(index, index_cleanup, size=12345)
    after = index.get_stats()
    assert after["fileCount"] == before["fileCount"] + 1, (before, after)
    assert after["totalFileSize"] == before["totalFileSize"] + 12345, (before, after)
    index.delete_record(rec["did"])
    assert index.get_stats() == before


# ------------------------------------------------------------------ create


def test_create_record_with_every_field(index, index_cleanup, raw, program):
    tag = support.unique_suffix()
    md5, sha256 = support.random_md5(), support.random_md5() * 2
    url1, url2 = "s3://bucket-%s/a.bam" % tag, "gs://bucket-%s/a.bam" % tag
    authz = ["/programs/%s/projects/any" % program]
    rec = _create(
        index,
        index_cleanup,
        hashes={"md5": md5, "sha256": sha256},
        size=2048,
        urls=[url1, url2],
        file_name="a-%s.bam" % tag,
        metadata={"origin": "acceptance"},
        acl=["phs000001"],
        authz=authz,
        urls_metadata={url1: {"state": "validated"}},
        version="v1",
        description="acceptance record",
        content_created_date="2024-01-02T03:04:05",
        content_updated_date="2024-01-03T03:04:05",
    )
    # FILES.md 1.2: the record document.
    assert support.is_did(rec["did"]), rec
    assert support.is_rev(rec["rev"]), rec
    assert support.is_uuid(rec["baseid"]), rec
    assert rec["form"] == "object"
    assert rec["size"] == 2048
    assert rec["hashes"] == {"md5": md5, "sha256": sha256}
    assert sorted(rec["urls"]) == sorted([url1, url2])
    assert rec["file_name"] == "a-%s.bam" % tag
    assert rec["metadata"] == {"origin": "acceptance"}
    assert rec["acl"] == ["phs000001"]
    assert rec["authz"] == authz
    assert rec["urls_metadata"][url1]["state"] == "validated", rec["urls_metadata"]
    assert rec["version"] == "v1"
    assert rec["description"] == "acceptance record"
    assert rec["uploader"] is None
    assert _iso(rec["content_created_date"]) == datetime.datetime(2024, 1, 2, 3, 4, 5)
    assert _iso(rec["content_updated_date"]) == datetime.datetime(2024, 1, 3, 3, 4, 5)
    assert _iso(rec["updated_date"]) >= _iso(rec["created_date"])
    # create_record re-reads the record: what it returns is what GET serves.
    got = raw.record(rec["did"])
    assert got == rec


def test_create_record_keeps_a_given_did(index, index_cleanup):
    did = str(uuid.uuid4())
    rec = _create(index, index_cleanup, did=did)
    assert rec["did"] == did
    assert index.get_record(did)["did"] == did


# ------------------------------------------------------------------- reads


@pytest.fixture(scope="module")
def one(index, index_cleanup):
    return _create(
        index,
        index_cleanup,
        urls=["s3://one-%s/file.txt" % support.unique_suffix()],
        file_name="one.txt",
        metadata={"origin": "acceptance"},
    )


def test_get_record(index, one):
    assert index.get_record(one["did"]) == one
    assert index.get_record(str(uuid.uuid4())) is None


def test_get_resolves_globally(index, one):
    # Gen3Index.get -> GET /index/<guid> (global resolver, FILES.md 1.3).
    got = index.get(one["did"])
    assert got["did"] == one["did"]
    assert got["hashes"] == one["hashes"]
    assert got["size"] == one["size"]
    assert got["urls"] == one["urls"]
    assert index.get(str(uuid.uuid4())) is None


def test_get_with_params(index, one):
    md5 = one["hashes"]["md5"]
    found = index.get_with_params({"hashes": {"md5": md5}, "size": one["size"]})
    assert found is not None and found["did"] == one["did"], found
    found = index.get_with_params({"hashes": {"md5": md5}, "metadata": {"origin": "acceptance"}})
    assert found is not None and found["did"] == one["did"], found
    assert index.get_with_params({"hashes": {"md5": md5}, "size": one["size"] + 1}) is None
    assert index.get_with_params({"hashes": {"md5": md5}, "metadata": {"origin": "elsewhere"}}) is None
    assert index.get_with_params({"hashes": {"md5": support.random_md5()}}) is None


def test_get_all_records_paginates_over_everything(index, batch):
    records = index.get_all_records(limit=7, paginate=True)
    dids = [r["did"] for r in records]
    dupes = sorted({d for d in dids if dids.count(d) > 1})
    assert not dupes, "records returned more than once: %s" % dupes[:10]
    missing = [d for d in batch["dids"] if d not in dids]
    assert not missing, "%d of the %d created records never listed" % (len(missing), BATCH)
    # keyset paging: start=<last did> returns did > start, ordered by did (FILES.md 1.3)
    assert dids == sorted(dids)


def test_listing_by_hash_with_keyset_paging(raw, batch):
    records = raw.records_by_hash(batch["md5"])
    assert sorted(r["did"] for r in records) == sorted(batch["dids"])
    ordered = sorted(batch["dids"])
    resp = raw.get("/index/index/", params={"hash": "md5:" + batch["md5"], "limit": 5}, anonymous=True)
    assert resp.status_code == 200
    body = resp.json()
    assert [r["did"] for r in body["records"]] == ordered[:5]
    assert body["limit"] == 5
    resp = raw.get(
        "/index/index/",
        params={"hash": "md5:" + batch["md5"], "limit": 5, "start": ordered[4]},
        anonymous=True,
    )
    assert [r["did"] for r in resp.json()["records"]] == ordered[5:10]
    resp = raw.get(
        "/index/index/",
        params={"hash": "md5:" + batch["md5"], "size": batch["size"] + 1},
        anonymous=True,
    )
    assert resp.json()["records"] == []


def test_get_records_on_page(index, batch):
    stats = index.get_stats()
    seen = []
    page = 0
    while True:
        records = index.get_records_on_page(limit=10, page=page)
        assert len(records) <= 10
        seen.extend(r["did"] for r in records)
        if len(records) < 10:
            break
        page += 1
        assert page <= stats["fileCount"] // 10 + 1, "page %d is still full" % page
    assert len(seen) == len(set(seen)), "a record appeared on two pages"
    assert not [d for d in batch["dids"] if d not in seen]
    # `gen3 objects manifest read` computes its pages from _stats fileCount.
    assert len(seen) == stats["fileCount"]
    assert index.get_records_on_page(limit=10, page=page + 5) == []


def test_get_records_bulk(index, batch):
    wanted = batch["dids"][:5]
    unknown = str(uuid.uuid4())
    records = index.get_records(wanted + [unknown])
    assert sorted(r["did"] for r in records) == sorted(wanted)
    for r in records:
        assert r["hashes"] == {"md5": batch["md5"]}
        assert r["size"] == batch["size"]


# ----------------------------------------------------------------- updates


def test_update_record_replaces_urls_acl_authz(index, index_cleanup, raw, program):
    tag = support.unique_suffix()
    rec = _create(
        index,
        index_cleanup,
        urls=["s3://old-%s/x" % tag],
        acl=["phsold"],
        authz=["/programs/%s/projects/old" % program],
        file_name="kept.txt",
        metadata={"k": "v"},
    )
    new_urls = ["s3://new-%s/x" % tag, "gs://new-%s/x" % tag]
    new_authz = ["/programs/%s/projects/new" % program]
    updated = index.update_record(rec["did"], urls=new_urls, acl=["phsnew"], authz=new_authz)
    assert updated["did"] == rec["did"]
    assert support.is_rev(updated["rev"]) and updated["rev"] != rec["rev"], (rec["rev"], updated["rev"])
    assert sorted(updated["urls"]) == sorted(new_urls)
    assert updated["acl"] == ["phsnew"]
    assert updated["authz"] == new_authz
    # Fields not named are kept; size and hashes never change on PUT.
    assert updated["file_name"] == "kept.txt"
    assert updated["metadata"] == {"k": "v"}
    assert updated["size"] == rec["size"]
    assert updated["hashes"] == rec["hashes"]
    assert updated["baseid"] == rec["baseid"]
    assert _iso(updated["updated_date"]) >= _iso(rec["updated_date"])
    assert raw.record(rec["did"]) == updated

    again = index.update_record(
        rec["did"], file_name="renamed.txt", version="2", description="d", metadata={"k": "w"}
    )
    assert again["rev"] != updated["rev"]
    assert (again["file_name"], again["version"], again["description"], again["metadata"]) == (
        "renamed.txt",
        "2",
        "d",
        {"k": "w"},
    )
    assert sorted(again["urls"]) == sorted(new_urls)


def test_update_record_accepts_the_nulls_the_sdk_sends(index, index_cleanup):
    # FILES.md 1.8: update_record PUTs every updatable field of the record,
    # nulls included (file_name, version, description, content dates).
    rec = _create(index, index_cleanup)
    assert rec["file_name"] is None and rec["version"] is None
    updated = index.update_record(rec["did"], urls=["s3://nulls-%s/x" % support.unique_suffix()])
    assert updated["rev"] != rec["rev"]
    assert len(updated["urls"]) == 1
    assert updated["file_name"] is None
    assert updated["version"] is None


def test_stale_document_patch_conflicts(index, index_cleanup):
    rec = _create(index, index_cleanup, urls=["s3://stale/a"])
    first = index.get_record_doc(rec["did"])
    second = index.get_record_doc(rec["did"])
    first.urls = ["s3://stale/b"]
    first.patch()
    second.urls = ["s3://stale/c"]
    with pytest.raises(requests.HTTPError) as exc:
        second.patch()
    assert exc.value.response.status_code == 409
    assert index.get_record(rec["did"])["urls"] == ["s3://stale/b"]


# ---------------------------------------------------------------- versions


def test_versions(index, index_cleanup, raw):
    v1 = _create(index, index_cleanup, size=10, version="1", file_name="v.txt", urls=["s3://v/1"])
    m2 = support.random_md5()
    v2 = index.create_new_version(v1["did"], hashes={"md5": m2}, size=20, urls=["s3://v/2"], file_name="v.txt")
    assert v2 is not None
    index_cleanup.append(v2["did"])
    assert v2["did"] != v1["did"]
    assert v2["baseid"] == v1["baseid"]
    assert v2["hashes"] == {"md5": m2}
    assert v2["size"] == 20
    assert v2["urls"] == ["s3://v/2"]
    # the old version is kept unchanged
    assert index.get_record(v1["did"])["hashes"] == v1["hashes"]

    assert index.get_latest_version(v1["did"])["did"] == v2["did"]
    # has_version=True skips versions without a version string (v2 has none)
    assert index.get_latest_version(v1["did"], has_version=True)["did"] == v1["did"]

    v3_did = str(uuid.uuid4())
    v3 = index.create_new_version(
        v2["did"], hashes={"md5": support.random_md5()}, size=30, did=v3_did, version="3"
    )
    index_cleanup.append(v3_did)
    assert v3["did"] == v3_did and v3["baseid"] == v1["baseid"]

    for member in (v1, v2, v3):
        versions = index.get_versions(member["did"])
        assert [v["did"] for v in versions] == [v1["did"], v2["did"], v3_did]
    assert index.get_latest_version(v1["did"])["did"] == v3_did
    assert index.get_latest_version(v2["did"], has_version=True)["did"] == v3_did
    # GET /index/index/<baseid> resolves to the newest version (FILES.md 1.3).
    assert index.get_record(v1["baseid"])["did"] == v3_did


# ------------------------------------------------------------------- blank


def test_blank_record_then_fill(index, index_cleanup, raw, admin_username):
    tag = support.unique_suffix()
    blank = index.create_blank(uploader=admin_username, file_name="upload-%s.bin" % tag)
    index_cleanup.append(blank["did"])
    assert support.is_did(blank["did"]) and support.is_rev(blank["rev"])
    assert blank["uploader"] == admin_username
    assert blank["file_name"] == "upload-%s.bin" % tag
    assert blank["size"] is None
    assert blank["hashes"] == {}
    assert blank["urls"] == []
    assert blank["acl"] == [] and blank["authz"] == []

    # the portal's "Map My Files" listing (FILES.md 1.1 step 3)
    resp = raw.get(
        "/index/index", params={"acl": "null", "uploader": admin_username, "limit": 1024}, anonymous=True
    )
    assert resp.status_code == 200
    assert blank["did"] in [r["did"] for r in resp.json()["records"]]

    md5, size = support.random_md5(), support.random_size()
    url = "s3://uploads-%s/%s/upload.bin" % (tag, blank["did"])
    filled = index.update_blank(blank["did"], blank["rev"], hashes={"md5": md5}, size=size, urls=[url])
    assert filled["did"] == blank["did"]
    assert support.is_rev(filled["rev"]) and filled["rev"] != blank["rev"]
    assert filled["hashes"] == {"md5": md5}
    assert filled["size"] == size
    assert filled["urls"] == [url]
    assert filled["uploader"] == admin_username
    assert filled["file_name"] == "upload-%s.bin" % tag

    # A filled record is no longer blank: 400 (FILES.md 1.3).
    resp = raw.put(
        "/index/index/blank/" + blank["did"],
        params={"rev": filled["rev"]},
        json={"hashes": {"md5": support.random_md5()}, "size": 1},
    )
    assert resp.status_code == 400, resp.text[:300]
    assert raw.record(blank["did"])["hashes"] == {"md5": md5}


def test_blank_create_answers_201(raw, index_cleanup, admin_username):
    resp = raw.post("/index/index/blank/", json={"uploader": admin_username, "file_name": "raw.bin"})
    assert resp.status_code == 201, resp.text[:300]
    body = resp.json()
    index_cleanup.append(body["did"])
    assert support.is_did(body["did"]) and support.is_rev(body["rev"]) and support.is_uuid(body["baseid"])


# ------------------------------------------------------------------ delete


def test_delete_record(index, raw):
    rec = index.create_record(hashes={"md5": support.random_md5()}, size=5)
    deleted = index.delete_record(rec["did"])
    assert deleted is not None
    assert index.get_record(rec["did"]) is None
    assert raw.get("/index/index/" + rec["did"], anonymous=True).status_code == 404
    assert raw.records_by_hash(rec["hashes"]["md5"]) == []
    assert index.delete_record(rec["did"]) is None


# ------------------------------------------------------------------- query


def test_query_urls(index, index_cleanup):
    tag = support.unique_suffix(6)
    r1 = _create(index, index_cleanup, urls=["s3://qu-%s/one.bam" % tag])
    r2 = _create(index, index_cleanup, urls=["gs://other/x", "gs://qu-%s/two.bam" % tag])
    _create(index, index_cleanup, urls=["s3://qu-%s-not/three.bam" % support.unique_suffix(6)])
    found = index.query_urls("qu-%s/" % tag)
    assert isinstance(found, list), found
    assert sorted(r["did"] for r in found) == sorted([r1["did"], r2["did"]])
    for r in found:
        assert any(("qu-%s/" % tag) in u for u in r["urls"]), r


# -------------------------------------------------------------------- guids


def test_minted_guids(index, index_cleanup):
    prefix = index.get_guids_prefix()
    assert prefix is None or isinstance(prefix, str), prefix
    guids = index.get_valid_guids(5)
    assert len(guids) == 5 and len(set(guids)) == 5, guids
    for g in guids:
        assert g.startswith(prefix or ""), (prefix, g)
        assert support.is_uuid(g[len(prefix or "") :]), g
        assert index.get_record(g) is None
    # a minted guid is free to use
    rec = _create(index, index_cleanup, did=guids[0])
    assert rec["did"] == guids[0]
