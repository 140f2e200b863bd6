"""Fixtures for the file-index acceptance suite (FILES.md section 4, F1).

Environment (the same as ../../../shared/acceptance):
  COMMONS_URL                  base URL of the commons, e.g. http://127.0.0.1:8080
  COMMONS_CREDENTIALS          credentials.json of an admin (create programs/projects, write anywhere)
  COMMONS_CREDENTIALS_NOACCESS optional: credentials.json of a second user with no grants
  COMMONS_TIMEOUT              optional: per-request read timeout in seconds (default 30)
"""

import json
import os

import pytest
import requests

import support

# ---------------------------------------------------------------- timeouts
# The SDK never passes a timeout to requests; a stalled server would hang the
# suite. Give every request of this process a default one (nothing changes
# on the wire, the SDK itself is untouched).
READ_TIMEOUT = float(os.environ.get("COMMONS_TIMEOUT", "30"))
CONNECT_TIMEOUT = min(5.0, READ_TIMEOUT)
_original_request = requests.sessions.Session.request


def _request_with_default_timeout(self, method, url, **kwargs):
    if kwargs.get("timeout") is None:
        kwargs["timeout"] = (CONNECT_TIMEOUT, READ_TIMEOUT)
    return _original_request(self, method, url, **kwargs)


requests.sessions.Session.request = _request_with_default_timeout


# -------------------------------------------------------------- environment


def _required_env(name):
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(
            "%s is not set. Run as: COMMONS_URL=http://127.0.0.1:PORT "
            "COMMONS_CREDENTIALS=path/to/credentials.json pytest -q" % name,
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """An empty HOME: the SDK caches tokens under ~/.cache/gen3/, and the CLI
    reads ~/.gen3/; an empty home forces a real token exchange every run."""
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = old


@pytest.fixture(scope="session")
def commons_url():
    url = _required_env("COMMONS_URL").rstrip("/")
    if "http://localhost" in url:
        # Gen3Index drops its /index path segment for such URLs
        # (gen3/index.py Gen3Index.__init__), so it would miss the server's index.
        pytest.fail(
            "COMMONS_URL=%s: use http://127.0.0.1:PORT, not localhost (the SDK "
            "treats http://localhost as a stand-alone indexd)" % url,
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session", autouse=True)
def commons_reachable(commons_url):
    """Fail every test at once, with one clear line, if nothing answers."""
    problem = None
    try:
        requests.get(commons_url + "/_status")
    except requests.RequestException as exc:
        problem = exc
    if problem is not None:
        pytest.fail("cannot reach COMMONS_URL=%s: %s" % (commons_url, problem), pytrace=False)


@pytest.fixture(scope="session")
def credentials_path():
    path = _required_env("COMMONS_CREDENTIALS")
    if not os.path.isfile(path):
        pytest.fail("COMMONS_CREDENTIALS=%s is not a file" % path, pytrace=False)
    # Gen3Auth treats a value without a path separator as a name under ~/.gen3/.
    return os.path.abspath(path)


@pytest.fixture(scope="session")
def credentials(credentials_path):
    with open(credentials_path) as fh:
        creds = json.load(fh)
    assert set(creds) >= {"api_key", "key_id"}, "credentials.json keys: %s" % sorted(creds)
    return creds


@pytest.fixture(scope="session")
def raw(commons_url, credentials):
    """Plain-requests client of the admin, bearer token from the documented endpoint."""
    return support.RawClient(commons_url, credentials)


@pytest.fixture(scope="session")
def auth(credentials_path, commons_url):
    from gen3.auth import Gen3Auth

    a = Gen3Auth(refresh_file=credentials_path)
    if a.endpoint != commons_url:
        pytest.fail(
            "The SDK takes the commons URL from the api_key's iss claim and got %r, "
            "but COMMONS_URL is %r." % (a.endpoint, commons_url),
            pytrace=False,
        )
    return a


@pytest.fixture(scope="session")
def index(auth, commons_url):
    from gen3.index import Gen3Index

    idx = Gen3Index(auth)
    assert idx.endpoint == commons_url + "/index", idx.endpoint
    return idx


@pytest.fixture(scope="session")
def sub(auth):
    from gen3.submission import Gen3Submission

    return Gen3Submission(auth_provider=auth)


@pytest.fixture(scope="session")
def admin_username(raw):
    """The admin's user name as fence's /user/user reports it (the uploader of blank records)."""
    resp = raw.get("/user/user")
    assert resp.status_code == 200, "GET /user/user -> %s %s" % (resp.status_code, resp.text[:300])
    name = resp.json().get("username")
    assert isinstance(name, str) and name, resp.json()
    return name


@pytest.fixture(scope="session")
def index_cleanup(raw):
    """Register dids here; they are deleted (best effort) at the end of the run."""
    dids = []
    yield dids
    for did in dids:
        try:
            rec = raw.record(did)
            if rec is not None:
                raw.delete("/index/index/" + did, params={"rev": rec["rev"]})
        except Exception:  # a failing server may leave them; they are harmless
            pass


@pytest.fixture(scope="session")
def program(sub):
    """A program unique to this run; deleted at the end."""
    name = "idx" + support.unique_suffix()
    sub.create_program(support.program_doc(name))
    yield name
    sub.delete_program(name)


@pytest.fixture(scope="module")
def module_project(sub, program):
    """A fresh project per test module; emptied and deleted afterwards."""
    project = support.create_project(sub, program, "f" + support.unique_suffix())
    yield project
    support.purge_project(sub, project)


# ------------------------------------------------------- optional second user


@pytest.fixture(scope="session")
def noaccess_credentials_path():
    path = os.environ.get("COMMONS_CREDENTIALS_NOACCESS", "").strip()
    if not path:
        pytest.skip("COMMONS_CREDENTIALS_NOACCESS not set: needs credentials.json of a user with no grants")
    if not os.path.isfile(path):
        pytest.fail("COMMONS_CREDENTIALS_NOACCESS=%s is not a file" % path, pytrace=False)
    return os.path.abspath(path)


@pytest.fixture(scope="session")
def noaccess_raw(commons_url, noaccess_credentials_path):
    with open(noaccess_credentials_path) as fh:
        return support.RawClient(commons_url, json.load(fh))


@pytest.fixture(scope="session")
def noaccess_index(noaccess_credentials_path):
    from gen3.auth import Gen3Auth
    from gen3.index import Gen3Index

    return Gen3Index(Gen3Auth(refresh_file=noaccess_credentials_path))
