"""What the file index refuses, and that a refusal writes nothing.

FILES.md 1.3 (errors, auth) and section 4 F1: errors are JSON
{"error": "<text>"}; an authenticated user without the grant gets 403
(Commons' deliberate deviation from indexd's 401); no token on a write is
401; PUT/DELETE are guarded by the record's rev.
"""

import uuid

import pytest
import requests

import support


def _body(md5=None, size=None, **extra):
    body = {
        "form": "object",
        "size": support.random_size() if size is None else size,
        "hashes": {"md5": md5 or support.random_md5()},
        "urls": ["s3://refusals/%s" % support.unique_suffix()],
    }
    body.update(extra)
    return body


def _assert_error_json(resp):
    try:
        body = resp.json()
    except ValueError:
        pytest.fail("error response is not JSON: %s %r" % (resp.status_code, resp.text[:200]))
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body


@pytest.fixture
def target(index, index_cleanup, program):
    rec = index.create_record(
        hashes={"md5": support.random_md5()},
        size=support.random_size(),
        urls=["s3://target/%s" % support.unique_suffix()],
        acl=["phsx"],
        authz=["/programs/%s/projects/guarded" % program],
    )
    index_cleanup.append(rec["did"])
    return rec


# --------------------------------------------------------- no grant -> 403


def test_user_without_grants_cannot_create(noaccess_raw, noaccess_index, raw, program):
    md5 = support.random_md5()
    resp = noaccess_raw.post("/index/index/", json=_body(md5, authz=["/programs/%s/projects/x" % program]))
    assert resp.status_code == 403, resp.text[:300]
    _assert_error_json(resp)
    # empty authz needs admin rights (FILES.md 1.3 "Auth")
    resp = noaccess_raw.post("/index/index/", json=_body(md5))
    assert resp.status_code == 403, resp.text[:300]
    # and through the SDK
    with pytest.raises(requests.HTTPError) as exc:
        noaccess_index.create_record(
            hashes={"md5": md5}, size=7, authz=["/programs/%s/projects/x" % program]
        )
    assert exc.value.response.status_code == 403
    assert raw.records_by_hash(md5) == []


def test_user_without_grants_cannot_create_blank(noaccess_raw, raw):
    name = "blank-%s.bin" % support.unique_suffix()
    resp = noaccess_raw.post("/index/index/blank/", json={"uploader": "noaccess", "file_name": name})
    assert resp.status_code == 403, resp.text[:300]
    _assert_error_json(resp)
    resp = raw.get("/index/index/", params={"file_name": name}, anonymous=True)
    assert resp.status_code == 200
    assert resp.json()["records"] == []


def test_user_without_grants_cannot_update_or_delete(noaccess_raw, noaccess_index, raw, target):
    did, rev = target["did"], target["rev"]
    resp = noaccess_raw.put("/index/index/" + did, params={"rev": rev}, json={"urls": ["s3://evil/x"]})
    assert resp.status_code == 403, resp.text[:300]
    _assert_error_json(resp)
    resp = noaccess_raw.delete("/index/index/" + did, params={"rev": rev})
    assert resp.status_code == 403, resp.text[:300]
    with pytest.raises(requests.HTTPError) as exc:
        noaccess_index.update_record(did, urls=["s3://evil/y"])
    assert exc.value.response.status_code == 403
    assert raw.record(did) == target


# ------------------------------------------------------------ no token -> 401


def test_writes_without_token_are_401(raw, target):
    md5 = support.random_md5()
    did, rev = target["did"], target["rev"]
    calls = [
        ("POST", "/index/index/", {"json": _body(md5)}),
        ("POST", "/index/index/blank/", {"json": {"uploader": "nobody", "file_name": md5}}),
        ("PUT", "/index/index/" + did, {"params": {"rev": rev}, "json": {"urls": ["s3://anon/x"]}}),
        ("DELETE", "/index/index/" + did, {"params": {"rev": rev}}),
        ("POST", "/index/index/" + did, {"json": _body(md5)}),
    ]
    for method, path, kw in calls:
        resp = raw.request(method, path, anonymous=True, **kw)
        assert resp.status_code == 401, "%s %s -> %s %s" % (method, path, resp.status_code, resp.text[:200])
    assert raw.records_by_hash(md5) == []
    assert raw.record(did) == target


# ------------------------------------------------------------- rev guard


def test_put_with_wrong_rev_is_409(raw, target):
    did = target["did"]
    wrong = "0badc0de" if target["rev"] != "0badc0de" else "deadbeef"
    resp = raw.put("/index/index/" + did, params={"rev": wrong}, json={"urls": ["s3://changed/x"]})
    assert resp.status_code == 409, resp.text[:300]
    _assert_error_json(resp)
    assert raw.record(did) == target


def test_delete_without_rev_is_400_and_wrong_rev_409(raw, target):
    did = target["did"]
    resp = raw.delete("/index/index/" + did)
    assert resp.status_code == 400, resp.text[:300]
    _assert_error_json(resp)
    wrong = "0badc0de" if target["rev"] != "0badc0de" else "deadbeef"
    resp = raw.delete("/index/index/" + did, params={"rev": wrong})
    assert resp.status_code == 409, resp.text[:300]
    assert raw.record(did) == target


# --------------------------------------------------------------- unknown did


def test_unknown_did_is_404_with_error(raw, index):
    unknown = str(uuid.uuid4())
    for path in ("/index/index/" + unknown, "/index/" + unknown):
        resp = raw.get(path, anonymous=True)
        assert resp.status_code == 404, "%s -> %s" % (path, resp.status_code)
        _assert_error_json(resp)
    resp = raw.put("/index/index/" + unknown, params={"rev": "12345678"}, json={"urls": []})
    assert resp.status_code == 404, resp.text[:300]
    resp = raw.delete("/index/index/" + unknown, params={"rev": "12345678"})
    assert resp.status_code == 404, resp.text[:300]
    assert index.get_record(unknown) is None


# -------------------------------------------------------------- bad input


BAD_BODIES = {
    "no_form": lambda b: {k: v for k, v in b.items() if k != "form"},
    "bad_form": lambda b: dict(b, form="folder"),
    "no_hashes": lambda b: dict(b, hashes={}),
    "bad_md5": lambda b: dict(b, hashes={"md5": "not-a-md5"}),
    "uppercase_md5": lambda b: dict(b, hashes={"md5": b["hashes"]["md5"].upper()}),
    "negative_size": lambda b: dict(b, size=-1),
    "no_size": lambda b: {k: v for k, v in b.items() if k != "size"},
    "no_urls": lambda b: {k: v for k, v in b.items() if k != "urls"},
    "unknown_property": lambda b: dict(b, colour="blue"),
}


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_invalid_record_is_400(raw, kind):
    size = support.random_size()
    body = BAD_BODIES[kind](_body(size=size))
    resp = raw.post("/index/index/", json=body)
    assert resp.status_code == 400, "%s -> %s %s" % (kind, resp.status_code, resp.text[:300])
    _assert_error_json(resp)
    resp = raw.get("/index/index/", params={"size": size}, anonymous=True)
    assert resp.json()["records"] == [], "a refused record was stored"


def test_duplicate_did_is_409(raw, target):
    resp = raw.post("/index/index/", json=_body(did=target["did"]))
    assert resp.status_code == 409, resp.text[:300]
    _assert_error_json(resp)
    assert raw.record(target["did"]) == target


@pytest.mark.parametrize("params", [{"limit": 2000}, {"limit": -1}, {"hash": "md5"}, {"limit": "many"}])
def test_bad_listing_is_400(raw, params):
    resp = raw.get("/index/index/", params=params, anonymous=True)
    assert resp.status_code == 400, "%s -> %s %s" % (params, resp.status_code, resp.text[:200])
    _assert_error_json(resp)
