"""Helpers for the file-index acceptance tests (no tests live here).

Everything that talks to the server goes through the official `gen3` SDK or
through plain `requests` with the headers a user's script would send. Nothing
here knows how Commons is implemented.
"""

import base64
import json
import re
import secrets
import time
from dataclasses import dataclass

import requests

UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
REV_RE = re.compile(r"^[0-9a-f]{8}$")

# Children before parents: the order in which a project's nodes are deleted.
DELETE_ORDER = [
    "submitted_unaligned_reads",
    "read_group",
    "aliquot",
    "sample",
    "case",
    "experiment",
]


def is_uuid(value):
    return isinstance(value, str) and bool(UUID_RE.fullmatch(value))


def is_did(value):
    """A GUID, optionally behind a prefix (FILES.md 1.2: pattern ^.*<uuid>$)."""
    return isinstance(value, str) and bool(UUID_RE.search(value))


def is_rev(value):
    return isinstance(value, str) and bool(REV_RE.match(value))


def unique_suffix(nbytes=4):
    """Lower-case hex: safe in program names, project codes and URLs."""
    return secrets.token_hex(nbytes)


def random_md5():
    """A fresh md5-shaped value, so hash look-ups never see other runs' records."""
    return secrets.token_hex(16)


def random_size():
    return 1000 + secrets.randbelow(10**9)


def _b64url_decode(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jwt_claims(token):
    return json.loads(_b64url_decode(token.split(".")[1]))


# ------------------------------------------------------------ raw requests


class RawClient:
    """Plain `requests`, following the documented token flow.

    POST {commons}/user/credentials/api/access_token with the credentials
    JSON, then send "Authorization: bearer <access_token>" on every call.
    """

    def __init__(self, commons_url, credentials):
        self.base = commons_url
        self.credentials = credentials
        self._token = None
        self._exp = 0

    @property
    def token(self):
        if self._token is None or time.time() + 60 > self._exp:
            resp = requests.post(self.base + "/user/credentials/api/access_token", json=self.credentials)
            assert resp.status_code == 200, "token exchange -> %s %s" % (resp.status_code, resp.text[:300])
            self._token = resp.json()["access_token"]
            self._exp = jwt_claims(self._token).get("exp", 0)
        return self._token

    def request(self, method, path, headers=None, anonymous=False, **kwargs):
        h = {} if anonymous else {"Authorization": "bearer " + self.token}
        if headers:
            h.update(headers)
        return requests.request(method, self.base + path, headers=h, **kwargs)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # -- index helpers (reads are anonymous in indexd, FILES.md 1.3 "Auth")

    def records_by_hash(self, md5, **params):
        """Every index record with this md5 (one page of up to 1024)."""
        query = {"hash": "md5:" + md5, "limit": 1024}
        query.update(params)
        resp = self.get("/index/index/", params=query, anonymous=True)
        assert resp.status_code == 200, "GET /index/index/?hash=md5:%s -> %s %s" % (
            md5,
            resp.status_code,
            resp.text[:300],
        )
        return resp.json()["records"]

    def record(self, did):
        """The record, or None on 404."""
        resp = self.get("/index/index/" + did, anonymous=True)
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, "GET /index/index/%s -> %s %s" % (did, resp.status_code, resp.text[:300])
        return resp.json()


# ---------------------------------------------------------------- projects


@dataclass
class Project:
    program: str
    code: str
    id: str

    @property
    def project_id(self):
        return "%s-%s" % (self.program, self.code)

    @property
    def authz(self):
        """The arborist resource of the project (FILES.md 1.6)."""
        return "/programs/%s/projects/%s" % (self.program, self.code)


def program_doc(name):
    # gdcdictionary program.yaml: required name, dbgap_accession_number.
    return {"type": "program", "name": name, "dbgap_accession_number": name}


def project_doc(code, availability_type="Restricted"):
    # gdcdictionary project.yaml: required code, name, dbgap_accession_number.
    # The accession number equals the code, so the phs-style acl of a data
    # file (program and project accession numbers, API.md 2.8) is
    # {program name, project code}.
    return {
        "type": "project",
        "code": code,
        "name": "Index acceptance project " + code,
        "dbgap_accession_number": code,
        "availability_type": availability_type,
    }


def create_project(sub, program, code, **doc):
    body = sub.create_project(program, project_doc(code, **doc))
    ents = body.get("entities") or []
    assert len(ents) == 1 and is_uuid(ents[0].get("id")), "create_project answered %r" % body
    return Project(program=program, code=code, id=ents[0]["id"])


def purge_project(sub, project):
    """Delete every node of the project (children first), then the project."""
    sub.delete_nodes(project.program, project.code, DELETE_ORDER, verbose=False)
    sub.delete_project(project.program, project.code)


def gql(sub, query, variables=None):
    body = sub.query(query, variables=variables)
    assert "data" in body, "GraphQL response without 'data': %r" % body
    return body["data"]


# ----------------------------------------------------------------- records
# Valid records of the gdcdictionary data model, linked by submitter_id.


def parent_chain(project_code, prefix):
    """experiment -> case -> sample -> aliquot -> read_group; returns (read_group sid, records)."""
    exp, case, sample, aliquot, rg = (prefix + s for s in ("-exp", "-case", "-sample", "-aliquot", "-rg"))
    records = [
        {"type": "experiment", "submitter_id": exp, "projects": {"code": project_code}},
        {"type": "case", "submitter_id": case, "experiments": {"submitter_id": exp}},
        {"type": "sample", "submitter_id": sample, "cases": {"submitter_id": case}},
        {"type": "aliquot", "submitter_id": aliquot, "samples": {"submitter_id": sample}},
        {"type": "read_group", "submitter_id": rg, "aliquots": {"submitter_id": aliquot}},
    ]
    return rg, records


def reads_file(submitter_id, read_group_sid, md5, size, **extra):
    """A submitted_unaligned_reads node (category data_file in gdcdictionary)."""
    rec = {
        "type": "submitted_unaligned_reads",
        "submitter_id": submitter_id,
        "read_groups": {"submitter_id": read_group_sid},
        "file_name": submitter_id + ".fastq.gz",
        "file_size": size,
        "md5sum": md5,
        "data_category": "Sequencing Reads",
        "data_type": "Unaligned Reads",
        "data_format": "FASTQ",
        "experimental_strategy": "WGS",
    }
    rec.update(extra)
    return rec
