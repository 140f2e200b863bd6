"""Data-file nodes and the file index (FILES.md 1.6, API.md 2.8, F1 "Submission side").

gdcdictionary's submitted_unaligned_reads is a data_file node and has an
object_id property, so:
- without object_id, submitting it registers an index record whose did is a
  fresh GUID stored into the node's object_id, with hashes {md5}, size, the
  submitted comma-separated urls, authz ["/programs/P/projects/Q"], acl the
  program and project dbGaP accession numbers (["*"] for an Open project),
  and alias "P-Q/<submitter_id>";
- with object_id naming a filled blank upload record, the record gets acl and
  authz and loses its uploader; contradicting hash or size is an entity error
  and nothing is written;
- node and record are written in one transaction.
"""

import pytest
import requests

import support


@pytest.fixture(scope="module")
def chain(sub, module_project):
    """The project plus experiment -> case -> sample -> aliquot -> read_group."""
    p = module_project
    rg, records = support.parent_chain(p.code, "ix")
    body = sub.submit_record(p.program, p.code, records)
    assert body.get("success") is True, body
    return {"project": p, "rg": rg}


def _node(sub, project, sid):
    data = support.gql(
        sub,
        '{ submitted_unaligned_reads(project_id: "%s", submitter_id: "%s") '
        "{ id object_id file_state md5sum file_size file_name } }" % (project.project_id, sid),
    )
    nodes = data["submitted_unaligned_reads"]
    assert len(nodes) <= 1, nodes
    return nodes[0] if nodes else None


def _expected_acl(project):
    # program and project dbgap_accession_number (support.program_doc/project_doc)
    return sorted([project.program, project.code])


def _submit_ok(sub, project, records):
    body = sub.submit_record(project.program, project.code, records)
    assert body.get("success") is True and body.get("code") == 200, body
    return body


def _filled_blank(index, index_cleanup, admin_username, file_name, md5=None, size=None):
    blank = index.create_blank(uploader=admin_username, file_name=file_name)
    index_cleanup.append(blank["did"])
    if md5 is None:
        return blank
    return index.update_blank(blank["did"], blank["rev"], hashes={"md5": md5}, size=size)


# --------------------------------------------------- (a) no object_id given


def test_data_file_without_object_id_registers_a_record(sub, index, raw, chain, index_cleanup):
    p, rg = chain["project"], chain["rg"]
    tag = support.unique_suffix()
    sid = "reads-a-" + tag
    md5, size = support.random_md5(), support.random_size()
    urls = ["s3://sub-%s/a.fastq.gz" % tag, "gs://sub-%s/a.fastq.gz" % tag]
    body = _submit_ok(sub, p, [support.reads_file(sid, rg, md5, size, urls=",".join(urls))])
    node_id = body["entities"][0]["id"]

    rec = index.get_with_params({"hashes": {"md5": md5}, "size": size})
    assert rec is not None, "submitting a data-file node registered no index record"
    index_cleanup.append(rec["did"])
    node = _node(sub, p, sid)
    assert node is not None and node["id"] == node_id
    # gdcdictionary has object_id: did = a fresh GUID stored into object_id
    assert support.is_did(node["object_id"]), node
    assert rec["did"] == node["object_id"], (rec["did"], node)
    assert node["file_state"] == "registered"
    assert rec["hashes"] == {"md5": md5}
    assert rec["size"] == size
    assert sorted(rec["urls"]) == sorted(urls)
    assert rec["authz"] == [p.authz]
    assert sorted(rec["acl"]) == _expected_acl(p)
    assert rec["uploader"] is None
    assert len(raw.records_by_hash(md5)) == 1

    # alias "P-Q/<submitter_id>", resolved by GET /index/<alias>
    alias = "%s/%s" % (p.project_id, sid)
    resp = raw.get("/index/" + alias, anonymous=True)
    assert resp.status_code == 200, "GET /index/%s -> %s %s" % (alias, resp.status_code, resp.text[:300])
    assert resp.json()["did"] == rec["did"]
    resolved = index.get(alias)  # the SDK's global resolve (adds ?no_dist)
    assert resolved is not None and resolved["did"] == rec["did"], resolved
    resp = raw.get("/index/index/%s/aliases" % rec["did"], anonymous=True)
    assert resp.status_code == 200, resp.text[:300]
    assert {"value": alias} in resp.json()["aliases"], resp.json()


def test_resubmitting_a_data_file_replaces_urls(sub, index, raw, chain, index_cleanup):
    p, rg = chain["project"], chain["rg"]
    tag = support.unique_suffix()
    sid = "reads-u-" + tag
    md5, size = support.random_md5(), support.random_size()
    first = _submit_ok(sub, p, [support.reads_file(sid, rg, md5, size, urls="s3://sub-%s/old.fq" % tag)])
    rec = index.get_with_params({"hashes": {"md5": md5}, "size": size})
    assert rec is not None
    index_cleanup.append(rec["did"])
    new_urls = ["s3://sub-%s/new.fq" % tag, "gs://sub-%s/new.fq" % tag]
    second = _submit_ok(sub, p, [support.reads_file(sid, rg, md5, size, urls=",".join(new_urls))])
    assert second["entities"][0]["id"] == first["entities"][0]["id"]
    assert second["entities"][0]["action"] == "update"
    after = index.get_record(rec["did"])
    assert sorted(after["urls"]) == sorted(new_urls)
    assert [r["did"] for r in raw.records_by_hash(md5)] == [rec["did"]]


@pytest.fixture(scope="module")
def open_chain(sub, program):
    project = support.create_project(sub, program, "o" + support.unique_suffix(), availability_type="Open")
    rg, records = support.parent_chain(project.code, "op")
    _submit_ok(sub, project, records)
    yield {"project": project, "rg": rg}
    support.purge_project(sub, project)


def test_open_project_file_is_public(sub, index, open_chain, index_cleanup):
    p, rg = open_chain["project"], open_chain["rg"]
    sid = "reads-open-" + support.unique_suffix()
    md5, size = support.random_md5(), support.random_size()
    _submit_ok(sub, p, [support.reads_file(sid, rg, md5, size, urls="s3://open/x.fq")])
    rec = index.get_with_params({"hashes": {"md5": md5}, "size": size})
    assert rec is not None
    index_cleanup.append(rec["did"])
    assert rec["acl"] == ["*"]
    assert rec["authz"] == [p.authz]


def test_failed_batch_registers_no_record(sub, raw, chain):
    # F1: node and record commit or roll back together.
    p, rg = chain["project"], chain["rg"]
    tag = support.unique_suffix()
    md5 = support.random_md5()
    records = [
        support.reads_file("reads-rb-" + tag, rg, md5, 4242, urls="s3://rollback/x.fq"),
        {"type": "case", "submitter_id": "orphan-" + tag, "experiments": {"submitter_id": "no-such-exp"}},
    ]
    with pytest.raises(requests.HTTPError) as exc:
        sub.submit_record(p.program, p.code, records)
    assert exc.value.response.status_code == 400
    assert _node(sub, p, "reads-rb-" + tag) is None
    assert raw.records_by_hash(md5) == [], "a rolled-back submission left an index record"


def test_deleting_the_node_keeps_the_record(sub, index, chain, index_cleanup):
    # FILES.md 1.6: deleting a node never touches the index.
    p, rg = chain["project"], chain["rg"]
    sid = "reads-del-" + support.unique_suffix()
    md5, size = support.random_md5(), support.random_size()
    body = _submit_ok(sub, p, [support.reads_file(sid, rg, md5, size, urls="s3://del/x.fq")])
    rec = index.get_with_params({"hashes": {"md5": md5}, "size": size})
    assert rec is not None
    index_cleanup.append(rec["did"])
    sub.delete_record(p.program, p.code, body["entities"][0]["id"])
    assert _node(sub, p, sid) is None
    assert index.get_record(rec["did"]) is not None


# ------------------------------------- (b) object_id of an uploaded file


def test_data_file_with_object_id_maps_the_upload(sub, index, raw, chain, index_cleanup, admin_username):
    p, rg = chain["project"], chain["rg"]
    tag = support.unique_suffix()
    sid = "reads-b-" + tag
    md5, size = support.random_md5(), support.random_size()
    file_name = "upload-%s.fastq.gz" % tag
    filled = _filled_blank(index, index_cleanup, admin_username, file_name, md5, size)
    assert filled["uploader"] == admin_username and filled["authz"] == []
    did = filled["did"]

    node = support.reads_file(sid, rg, md5, size, object_id=did, file_name=file_name)
    _submit_ok(sub, p, [node])

    rec = index.get_record(did)
    assert rec["authz"] == [p.authz], rec
    assert sorted(rec["acl"]) == _expected_acl(p), rec
    assert rec["uploader"] is None, rec
    assert rec["hashes"] == {"md5": md5} and rec["size"] == size
    assert rec["rev"] != filled["rev"]
    assert _node(sub, p, sid)["object_id"] == did
    # the upload was mapped, not registered a second time
    assert [r["did"] for r in raw.records_by_hash(md5)] == [did]
    assert index.get_with_params({"hashes": {"md5": md5}, "size": size})["did"] == did


# ------------------------------ (c) object_id whose record contradicts it


MISMATCHES = {
    "md5": lambda md5, size: (support.random_md5(), size),
    "size": lambda md5, size: (md5, size + 1),
    "not_uploaded_yet": None,  # blank record without hashes and size
}


@pytest.mark.parametrize("kind", sorted(MISMATCHES))
def test_data_file_contradicting_its_record_is_rejected(
    sub, index, raw, chain, index_cleanup, admin_username, kind
):
    p, rg = chain["project"], chain["rg"]
    tag = support.unique_suffix()
    sid = "reads-c-" + tag
    md5, size = support.random_md5(), support.random_size()
    file_name = "upload-%s.fastq.gz" % tag
    if MISMATCHES[kind] is None:
        before = _filled_blank(index, index_cleanup, admin_username, file_name)
        sub_md5, sub_size = md5, size
    else:
        before = _filled_blank(index, index_cleanup, admin_username, file_name, md5, size)
        sub_md5, sub_size = MISMATCHES[kind](md5, size)

    node = support.reads_file(sid, rg, sub_md5, sub_size, object_id=before["did"], file_name=file_name)
    with pytest.raises(requests.HTTPError) as exc:
        sub.submit_record(p.program, p.code, [node])
    resp = exc.value.response
    assert resp.status_code == 400, resp.text[:300]
    body = resp.json()
    assert body.get("success") is False, body
    ents = body.get("entities") or []
    assert len(ents) == 1 and ents[0].get("valid") is False and ents[0].get("errors"), body
    named = " ".join(str(e.get("keys")) + " " + str(e.get("message")) for e in ents[0]["errors"])
    assert any(k in named for k in ("md5sum", "file_size", "object_id")), ents[0]["errors"]

    assert _node(sub, p, sid) is None, "the rejected node was stored"
    assert raw.record(before["did"]) == before, "the index record changed"
    if sub_md5 != md5:
        assert raw.records_by_hash(sub_md5) == []
