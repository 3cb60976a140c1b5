"""routes.d/identity.yaml against a fake walt.id community stack (issuer, verifier and wallet APIs)."""

from __future__ import annotations

import pytest
from starlette.responses import PlainTextResponse

from tests.contracts.fakes import FakeBackend, failed, json_answer, ok, route_names, start

TOKEN = "waltid-api-token-1"
WALLET = "3f2a1c0e-9b7d-4e21-8a55-0c6d1f2e3b4a"
ISSUE = {
    "issuerKey": {"type": "jwk", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "X", "d": "D"}},
    "issuerDid": "did:key:z6Mkjm2",
    "credentialConfigurationId": "OpenBadgeCredential_jwt_vc_json",
    "credentialData": {"type": ["VerifiableCredential", "OpenBadgeCredential"], "credentialSubject": {}},
}


def fake_waltid() -> FakeBackend:
    fake = FakeBackend(
        lambda h: h.get("authorization") == f"Bearer {TOKEN}", json_answer({"message": "Unauthorized"}, 401)
    )

    @fake.route("/openid4vc/jwt/issue", "POST")
    async def issue(request, rec):
        body = rec.json
        missing = [
            k for k in ("issuerKey", "issuerDid", "credentialConfigurationId", "credentialData") if k not in body
        ]
        if missing:
            return json_answer({"message": f"Missing {missing}"}, 400)
        return PlainTextResponse(
            "openid-credential-offer://issuer.city.example/?credential_offer_uri=https%3A%2F%2F"
            "issuer.city.example%2Fopenid4vc%2FcredentialOffer%3Fid%3D7d1f"
        )

    @fake.route("/openid4vc/verify", "POST")
    async def verify(request, rec):
        if not rec.json.get("request_credentials"):
            return json_answer({"message": "request_credentials is required"}, 400)
        return PlainTextResponse("openid4vp://authorize?response_type=vp_token&client_id=verifier&state=8a9b")

    @fake.route("/wallet-api/wallet/{wallet}/credentials/{id}", "GET")
    async def credential(request, rec):
        if request.path_params["wallet"] != WALLET:
            return json_answer({"message": "Wallet not found"}, 404)
        return json_answer(
            {
                "id": request.path_params["id"],
                "wallet": WALLET,
                "document": "eyJhbGciOi...",
                "parsedDocument": {"type": ["VerifiableCredential", "OpenBadgeCredential"]},
            }
        )

    @fake.route("/wallet-api/wallet/{wallet}/exchange/usePresentationRequest", "POST")
    async def present(request, rec):
        return json_answer({"redirectUri": "https://verifier.city.example/success/8a9b"})

    @fake.route("/wallet-api/wallet/{wallet}/dids", "GET")
    async def dids(request, rec):
        return json_answer([{"did": "did:key:z6MkuHolder", "alias": "main", "default": True}])

    return fake


@pytest.fixture
def walt(gateway):
    fake = fake_waltid()
    with fake.serve() as url:
        yield fake, start(gateway, "identity", {"WALTID_URL": url, "WALTID_API_KEY": TOKEN})


def test_identity_issue_forwards_the_issuance_request_and_passes_the_offer_url(walt):
    fake, client = walt
    r = client.post("/identity/credentials/issue", json={**ISSUE, "unknown": 1})
    assert r.status_code == 200 and r.text.startswith("openid-credential-offer://")
    assert r.headers["content-type"].startswith("text/plain")
    rec = fake.last
    assert rec["path"] == "/openid4vc/jwt/issue" and rec["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert rec.json == ISSUE


def test_identity_issue_validates_before_calling_walt_id(walt):
    fake, client = walt
    error = failed(
        client.post("/identity/credentials/issue", json={"issuerDid": "not-a-did"}), "waltid", 400, "VALIDATION_ERROR"
    )
    assert "$.issuerDid" in {d["path"] for d in error["details"]}
    assert fake.requests == []


def test_identity_verify_starts_a_verification_session(walt):
    fake, client = walt
    request = {
        "request_credentials": [{"format": "jwt_vc_json", "type": "OpenBadgeCredential"}],
        "vc_policies": ["signature", "expired"],
    }
    r = client.post(
        "/identity/credentials/verify",
        json=request,
        headers={"authorizeBaseUrl": "openid4vp://authorize", "responseMode": "direct_post"},
    )
    assert r.status_code == 200 and "state=8a9b" in r.text
    rec = fake.last
    assert rec["path"] == "/openid4vc/verify" and rec.json == request
    assert rec["headers"]["responsemode"] == "direct_post"  # walt.id's session options travel as headers


def test_identity_get_credential_from_the_wallet(walt):
    fake, client = walt
    data = ok(client.get("/identity/credentials/urn:uuid:1234", params={"wallet": WALLET}), "waltid")
    assert data["id"] == "urn:uuid:1234"
    assert fake.last["path"] == f"/wallet-api/wallet/{WALLET}/credentials/urn:uuid:1234" and fake.last["query"] == ""
    seen = len(fake.requests)
    failed(client.get("/identity/credentials/urn:uuid:1234"), "waltid", 400, "INVALID_PARAMETER")
    failed(client.get("/identity/credentials/x", params={"wallet": "../admin"}), "waltid", 400, "INVALID_PARAMETER")
    assert len(fake.requests) == seen
    error = failed(client.get("/identity/credentials/x", params={"wallet": "0000"}), "waltid", 404, "UPSTREAM_ERROR")
    assert error["message"] == "Wallet not found"


def test_identity_presentation_uses_the_wallets_exchange(walt):
    fake, client = walt
    data = ok(
        client.post(
            "/identity/presentations",
            json={
                "wallet": WALLET,
                "did": "did:key:z6MkuHolder",
                "presentationRequest": "openid4vp://authorize?state=8a9b",
                "selectedCredentials": ["urn:uuid:1234"],
            },
        ),
        "waltid",
    )
    assert data["redirectUri"].endswith("/8a9b")
    rec = fake.last
    assert rec["path"] == f"/wallet-api/wallet/{WALLET}/exchange/usePresentationRequest"
    assert rec.json == {
        "did": "did:key:z6MkuHolder",
        "presentationRequest": "openid4vp://authorize?state=8a9b",
        "selectedCredentials": ["urn:uuid:1234"],
    }


def test_identity_list_dids(walt):
    fake, client = walt
    assert ok(client.get("/identity/dids", params={"wallet": WALLET}), "waltid")[0]["default"] is True
    assert fake.last["path"] == f"/wallet-api/wallet/{WALLET}/dids"


def test_identity_wrong_token_is_enveloped_401(gateway):
    fake = fake_waltid()
    with fake.serve() as url:
        client = start(gateway, "identity", {"WALTID_URL": url, "WALTID_API_KEY": "other"})
        failed(client.get("/identity/dids", params={"wallet": WALLET}), "waltid", 401, "UPSTREAM_ERROR")


def test_identity_every_route_has_a_contract():
    assert route_names("identity") == {
        "issue-credential",
        "verify-credential",
        "get-credential",
        "create-presentation",
        "list-dids",
    }
