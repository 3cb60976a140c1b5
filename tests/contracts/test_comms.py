"""routes.d/comms.yaml against a fake SendGrid v3 Mail Send API."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from tests.contracts.fakes import FakeBackend, failed, json_answer, ok, route_names, start

KEY = "SG.test-key.abc"
SENDER = "no-reply@city.example"
TEMPLATE = "d-" + "0123456789abcdef" * 2


def fake_sendgrid() -> FakeBackend:
    fake = FakeBackend(
        lambda h: h.get("authorization") == f"Bearer {KEY}",
        json_answer(
            {
                "errors": [
                    {
                        "field": None,
                        "message": "The provided authorization grant is invalid, expired, or revoked",
                        "help": None,
                    }
                ]
            },
            401,
        ),
    )

    @fake.route("/v3/mail/send", "POST")
    async def send(request, rec):
        mail = rec.json
        errors = []
        if mail.get("from", {}).get("email") != SENDER:
            errors.append({"field": "from", "message": "The from address does not match a verified Sender Identity."})
        if not mail.get("personalizations") or not all(p.get("to") for p in mail["personalizations"]):
            errors.append({"field": "personalizations", "message": "The personalizations field is required."})
        if "template_id" not in mail and not mail.get("content"):
            errors.append(
                {
                    "field": "content",
                    "message": "Unless a valid template_id is provided, the content parameter is required.",
                }
            )
        if [c["type"] for c in mail.get("content", [])] not in (
            [],
            ["text/plain"],
            ["text/html"],
            ["text/plain", "text/html"],
        ):
            errors.append({"field": "content", "message": "text/plain must come first."})
        if errors:
            return json_answer({"errors": errors}, 400)
        return Response(status_code=202, headers={"X-Message-Id": "msg-Qx7"})

    return fake


@pytest.fixture
def mail(gateway):
    fake = fake_sendgrid()
    with fake.serve() as url:
        yield fake, start(gateway, "comms", {"SENDGRID_API_URL": url, "SENDGRID_API_KEY": KEY, "SENDGRID_FROM": SENDER})


def test_comms_email_becomes_sendgrid_personalizations(mail):
    fake, client = mail
    data = ok(
        client.post(
            "/comms/email",
            json={
                "to": "amal@example.sa",
                "toName": "Amal",
                "subject": "Permit ready",
                "text": "Your permit is ready.",
                "html": "<p>Your permit is ready.</p>",
            },
        ),
        "sendgrid",
        202,
    )
    assert data == {"accepted": True, "messageId": "msg-Qx7"}
    rec = fake.last
    assert rec["path"] == "/v3/mail/send" and rec["headers"]["authorization"] == f"Bearer {KEY}"
    assert rec.json == {
        "personalizations": [{"to": [{"email": "amal@example.sa", "name": "Amal"}]}],
        "from": {"email": SENDER},
        "subject": "Permit ready",
        "content": [
            {"type": "text/plain", "value": "Your permit is ready."},
            {"type": "text/html", "value": "<p>Your permit is ready.</p>"},
        ],
    }


def test_comms_email_html_only_with_reply_to(mail):
    fake, client = mail
    ok(
        client.post(
            "/comms/email",
            json={"to": "a@example.sa", "subject": "Hi", "html": "<b>x</b>", "replyTo": "desk@city.example"},
        ),
        "sendgrid",
        202,
    )
    assert fake.last.json["content"] == [{"type": "text/html", "value": "<b>x</b>"}]
    assert fake.last.json["reply_to"] == {"email": "desk@city.example"}
    assert fake.last.json["personalizations"] == [{"to": [{"email": "a@example.sa"}]}]


def test_comms_email_validation(mail):
    fake, client = mail
    failed(
        client.post("/comms/email", json={"to": "a@example.sa", "subject": "no body"}),
        "sendgrid",
        400,
        "VALIDATION_ERROR",
    )
    failed(
        client.post("/comms/email", json={"to": "not-an-address", "subject": "s", "text": "t"}),
        "sendgrid",
        400,
        "VALIDATION_ERROR",
    )
    failed(
        client.post(
            "/comms/email", json={"to": "a@example.sa", "subject": "s", "text": "t", "from": "ceo@city.example"}
        ),
        "sendgrid",
        400,
        "VALIDATION_ERROR",
    )  # the sender is the gateway's, never the client's
    assert fake.requests == []


def test_comms_template_email_carries_dynamic_data(mail):
    fake, client = mail
    ok(
        client.post(
            "/comms/email/template",
            json={"to": "a@example.sa", "templateId": TEMPLATE, "data": {"name": "Amal", "permit": {"id": 7}}},
        ),
        "sendgrid",
        202,
    )
    assert fake.last.json == {
        "personalizations": [
            {"to": [{"email": "a@example.sa"}], "dynamic_template_data": {"name": "Amal", "permit": {"id": 7}}}
        ],
        "from": {"email": SENDER},
        "template_id": TEMPLATE,
    }
    failed(
        client.post("/comms/email/template", json={"to": "a@example.sa", "templateId": "welcome"}),
        "sendgrid",
        400,
        "VALIDATION_ERROR",
    )


def test_comms_sendgrid_errors_are_enveloped_with_their_message(gateway):
    fake = fake_sendgrid()
    with fake.serve() as url:
        client = start(
            gateway,
            "comms",
            {"SENDGRID_API_URL": url, "SENDGRID_API_KEY": KEY, "SENDGRID_FROM": "unverified@elsewhere.example"},
        )
        error = failed(
            client.post("/comms/email", json={"to": "a@example.sa", "subject": "s", "text": "t"}),
            "sendgrid",
            400,
            "UPSTREAM_ERROR",
        )
    assert error["message"] == "The from address does not match a verified Sender Identity."


def test_comms_without_sender_is_not_configured(gateway):
    client = start(gateway, "comms", {"SENDGRID_API_KEY": KEY})
    error = failed(
        client.post("/comms/email", json={"to": "a@example.sa", "subject": "s", "text": "t"}),
        "sendgrid",
        503,
        "BACKEND_NOT_CONFIGURED",
    )
    assert set(error["details"]["missing"]) == {"SENDGRID_FROM"} and "SENDGRID_FROM" in error["message"]


def test_comms_every_route_has_a_contract():
    assert route_names("comms") == {"send-email", "send-template-email"}
