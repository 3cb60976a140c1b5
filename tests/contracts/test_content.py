"""routes.d/content.yaml against a fake Payload CMS REST API."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from tests.contracts.fakes import JWT_SECRET, SERVICE_KEY, FakeBackend, failed, json_answer, ok, route_names, start

CMS_KEY = "payload-users-api-key-1"
PAGES = [{"id": 1, "slug": "home", "title": "Home", "layout": []}, {"id": 2, "slug": "about", "title": "About"}]


def page_of(docs, limit=10, page=1):
    return {
        "docs": docs,
        "totalDocs": len(docs),
        "limit": limit,
        "totalPages": 1,
        "page": page,
        "pagingCounter": 1,
        "hasPrevPage": False,
        "hasNextPage": False,
        "prevPage": None,
        "nextPage": None,
    }


def fake_payload() -> FakeBackend:
    fake = FakeBackend(
        lambda h: h.get("authorization") == f"users API-Key {CMS_KEY}",
        json_answer({"errors": [{"message": "You are not allowed to perform this action."}]}, 403),
    )

    @fake.route("/api/search", "POST")
    async def search(request, rec):
        # Payload's method override: a find whose query is the form-encoded body
        if rec["headers"].get("x-payload-http-method-override") != "GET":
            return json_answer({"errors": [{"message": "Method Not Allowed"}]}, 405)
        form = rec.form
        hits = [{"id": "s1", "title": "About the city", "priority": 10, "doc": {"relationTo": "pages", "value": 2}}]
        return json_answer(page_of(hits if "city" in form["where[and][0][title][like]"] else [], int(form["limit"])))

    @fake.route("/api/{collection}", "GET")
    async def find(request, rec):
        args = rec.args
        if args.get("sort", "id").lstrip("-") not in ("id", "title", "createdAt"):
            return json_answer({"errors": [{"message": f"The following path cannot be queried: {args['sort']}"}]}, 400)
        slug = args.get("where[slug][equals]")
        docs = [p for p in PAGES if slug is None or p["slug"] == slug]
        return json_answer(page_of(docs[: int(args.get("limit", 10))], int(args.get("limit", 10))))

    return fake


@pytest.fixture
def cms(gateway):
    fake = fake_payload()
    with fake.serve() as url:
        yield fake, start(gateway, "content", {"PAYLOAD_CMS_URL": url, "PAYLOAD_API_KEY": SERVICE_KEY})


def test_content_cms_refusing_the_key_is_an_enveloped_403(cms):
    """The fake, like Payload, wants `users API-Key <its key>`; the shipped file sends PAYLOAD_API_KEY."""
    fake, client = cms
    error = failed(client.get("/content/pages"), "payload", 403, "UPSTREAM_ERROR")
    assert error["message"] == "You are not allowed to perform this action."
    assert fake.last["headers"]["authorization"] == f"users API-Key {SERVICE_KEY}"


@pytest.fixture
def cms_keyed(gateway):
    fake = fake_payload()
    with fake.serve() as url:
        # the CMS key differs from the gateway's service key: CITYOS_CMS_API_KEY is the client's key here
        client = start(
            gateway, "content", {"PAYLOAD_CMS_URL": url, "PAYLOAD_API_KEY": CMS_KEY, "CITYOS_CMS_API_KEY": SERVICE_KEY}
        )
        yield fake, client


def test_content_list_pages_passes_paging_and_maps_pagination(cms_keyed):
    fake, client = cms_keyed
    data = ok(client.get("/content/pages", params={"limit": 2, "page": 1, "draft": "true", "where[x]": "y"}), "payload")
    assert [p["slug"] for p in data] == ["home", "about"]
    rec = fake.last
    assert rec["method"] == "GET" and rec["path"] == "/api/pages"
    assert rec.args == {"limit": "2", "page": "1"}  # draft and raw where clauses are not forwarded
    assert rec["headers"]["authorization"] == f"users API-Key {CMS_KEY}"
    assert "x-api-key" not in rec["headers"]  # the client's gateway key never reaches the CMS
    body = client.get("/content/pages").json()
    assert body["meta"]["pagination"] == {"total": 2, "page": 1, "limit": 10, "totalPages": 1, "hasNextPage": False}


def test_content_get_page_queries_by_slug_and_answers_the_single_doc(cms_keyed):
    fake, client = cms_keyed
    data = ok(client.get("/content/pages/about", params={"depth": 2}), "payload")
    assert data == PAGES[1]
    assert fake.last["path"] == "/api/pages"
    assert fake.last.args == {"depth": "2", "where[slug][equals]": "about", "limit": "1"}


def test_content_get_page_unknown_slug_is_404(cms_keyed):
    _, client = cms_keyed
    failed(client.get("/content/pages/nope"), "payload", 404, "PAGE_NOT_FOUND")


def test_content_get_page_refuses_a_malformed_slug_before_calling_the_cms(cms_keyed):
    fake, client = cms_keyed
    failed(client.get("/content/pages/a.b"), "payload", 400, "INVALID_PARAMETER")
    assert fake.requests == []


def test_content_collection_allowlist(cms_keyed):
    fake, client = cms_keyed
    ok(client.get("/content/collections/posts", params={"limit": 5, "sort": "-createdAt"}), "payload")
    assert fake.last["path"] == "/api/posts" and fake.last.args == {"limit": "5", "sort": "-createdAt"}
    seen = len(fake.requests)
    failed(client.get("/content/collections/users"), "payload", 400, "INVALID_PARAMETER")
    failed(client.get("/content/collections/payload-preferences"), "payload", 400, "INVALID_PARAMETER")
    assert len(fake.requests) == seen


def test_content_search_sends_a_form_encoded_find_with_method_override(cms_keyed):
    fake, client = cms_keyed
    data = ok(
        client.post("/content/search", json={"query": "city", "collections": ["pages", "events"], "limit": 5}),
        "payload",
    )
    assert data[0]["title"] == "About the city"
    rec = fake.last
    assert rec["method"] == "POST" and rec["path"] == "/api/search"
    assert rec["headers"]["x-payload-http-method-override"] == "GET"
    assert rec.form == {
        "where[and][0][title][like]": "city",
        "where[and][1][doc.relationTo][in][0]": "pages",
        "where[and][1][doc.relationTo][in][1]": "events",
        "limit": "5",
        "page": "1",
        "sort": "-priority",
        "depth": "1",
    }


def test_content_search_validates_the_body(cms_keyed):
    fake, client = cms_keyed
    error = failed(client.post("/content/search", json={"collections": ["users"]}), "payload", 400, "VALIDATION_ERROR")
    assert {d["path"] for d in error["details"]} == {"$", "$.collections[0]"}
    assert fake.requests == []


def test_content_upstream_error_keeps_status_and_payloads_message(cms_keyed):
    _, client = cms_keyed
    error = failed(client.get("/content/pages", params={"sort": "secret"}), "payload", 400, "UPSTREAM_ERROR")
    assert error["message"] == "The following path cannot be queried: secret"


def test_content_user_jwt_is_accepted_and_not_forwarded(cms_keyed):
    fake, client = cms_keyed
    token = jwt.encode(
        {"sub": "user-7", "role": "citizen", "exp": int(time.time()) + 300}, JWT_SECRET, algorithm="HS256"
    )
    with httpx.Client(base_url=client.base_url, timeout=15) as user:
        ok(user.get("/content/pages", headers={"authorization": f"Bearer {token}"}), "payload")
        failed(
            user.get("/content/pages", headers={"authorization": "Bearer forged.token.value"}),
            "payload",
            401,
            "INVALID_TOKEN",
        )
    assert fake.last["headers"]["authorization"] == f"users API-Key {CMS_KEY}"
    assert token not in str(fake.requests)


def test_content_requires_credentials(gateway):
    fake = fake_payload()
    with fake.serve() as url:
        client = start(
            gateway, "content", {"PAYLOAD_CMS_URL": url, "PAYLOAD_API_KEY": CMS_KEY, "CITYOS_CMS_API_KEY": SERVICE_KEY}
        )
        del client.headers["x-api-key"]
        failed(client.get("/content/pages"), "payload", 401, "UNAUTHENTICATED")
        failed(client.get("/content/pages", headers={"x-api-key": "wrong"}), "payload", 401, "INVALID_API_KEY")
    assert fake.requests == []


def test_content_unconfigured_backend_is_503(gateway):
    client = start(gateway, "content", {})
    error = failed(client.get("/content/pages"), "payload", 503, "BACKEND_NOT_CONFIGURED")
    assert "PAYLOAD_CMS_URL" in error["message"]


# Routes added for the shipped workflows' steps and compensations; their wire format is asserted
# by tests/test_workflows_shipped.py, which drives them through fakes of this backend.
WORKFLOW_STEPS = {"get-document", "create-document", "delete-document"}


def test_content_every_route_has_a_contract():
    assert route_names("content") == {"list-pages", "get-page", "list-collection", "search"} | WORKFLOW_STEPS
