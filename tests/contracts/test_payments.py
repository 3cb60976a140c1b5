"""routes.d/payments.yaml against a fake Stripe API (form-encoded bodies, Bearer key, idempotency keys)."""

from __future__ import annotations

import pytest

from tests.contracts.fakes import FakeBackend, failed, json_answer, ok, route_names, start

SECRET = "sk_test_51CityPlatform"


def stripe_error(status, message, code=None, param=None):
    return json_answer(
        {
            "error": {
                "type": "invalid_request_error" if status != 402 else "card_error",
                "code": code,
                "message": message,
                "param": param,
            }
        },
        status,
    )


def fake_stripe() -> FakeBackend:
    fake = FakeBackend(
        lambda h: h.get("authorization") == f"Bearer {SECRET}",
        stripe_error(401, "Invalid API Key provided: sk_test_****"),
    )
    idempotent: dict[str, tuple[bytes, dict]] = {}

    def form_of(rec, *required):
        if not rec["headers"].get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return None, stripe_error(400, f"Missing required param: {required[0]}.", "parameter_missing", required[0])
        form = rec.form
        for name in required:
            if name not in form:
                return None, stripe_error(400, f"Missing required param: {name}.", "parameter_missing", name)
        return form, None

    @fake.route("/v1/payment_intents", "POST")
    async def create_intent(request, rec):
        key = rec["headers"].get("idempotency-key")
        if key in idempotent:
            body, answer = idempotent[key]
            if body != rec["body"]:
                return stripe_error(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters.",
                    "idempotency_key_in_use",
                )
            return json_answer(answer)
        form, error = form_of(rec, "amount", "currency")
        if error:
            return error
        if form["amount"] == "402":
            return stripe_error(402, "Your card was declined.", "card_declined")
        answer = {
            "id": f"pi_{len(idempotent) + 1}",
            "object": "payment_intent",
            "amount": int(form["amount"]),
            "currency": form["currency"],
            "status": "requires_payment_method",
            "client_secret": "pi_1_secret_x",
            "customer": form.get("customer"),
            "livemode": False,
            "created": 1,
            "metadata": {},
            "charges": {},
        }
        if key:
            idempotent[key] = (rec["body"], answer)
        return json_answer(answer)

    @fake.route("/v1/customers", "POST")
    async def create_customer(request, rec):
        form, error = form_of(rec, "email")
        return error or json_answer(
            {"id": "cus_Q1", "object": "customer", "email": form["email"], "name": form.get("name")}
        )

    @fake.route("/v1/customers/{id}/payment_methods", "GET")
    async def methods(request, rec):
        if request.path_params["id"] != "cus_Q1":
            return stripe_error(404, f"No such customer: '{request.path_params['id']}'", "resource_missing", "customer")
        return json_answer(
            {
                "object": "list",
                "url": "/v1/customers/cus_Q1/payment_methods",
                "has_more": False,
                "data": [{"id": "pm_1", "object": "payment_method", "type": rec.args.get("type", "card")}],
            }
        )

    @fake.route("/v1/subscriptions", "POST")
    async def create_subscription(request, rec):
        form, error = form_of(rec, "customer", "items[0][price]")
        if error:
            return error
        return json_answer(
            {
                "id": "sub_1",
                "object": "subscription",
                "status": "incomplete",
                "customer": form["customer"],
                "latest_invoice": {"id": "in_1", "payment_intent": {"id": "pi_9", "client_secret": "pi_9_secret"}},
            }
        )

    return fake


@pytest.fixture
def stripe(gateway):
    fake = fake_stripe()
    with fake.serve() as url:
        yield fake, start(gateway, "payments", {"STRIPE_API_URL": url, "STRIPE_SECRET_KEY": SECRET})


def test_payments_intent_is_form_encoded_with_bearer_and_version(stripe):
    fake, client = stripe
    data = ok(
        client.post(
            "/payments/intents",
            json={
                "amount": 2500,
                "currency": "sar",
                "customer": "cus_Q1",
                "metadata": {"order": "ord_7", "seats": 2},
                "capture_method": "manual",
            },
        ),
        "stripe",
        201,
    )
    assert data == {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": 2500,
        "currency": "sar",
        "status": "requires_payment_method",
        "client_secret": "pi_1_secret_x",
        "customer": "cus_Q1",
        "livemode": False,
        "created": 1,
    }
    rec = fake.last
    assert rec["path"] == "/v1/payment_intents"
    assert rec["headers"]["authorization"] == f"Bearer {SECRET}" and rec["headers"]["stripe-version"] == "2024-06-20"
    assert rec.form == {
        "automatic_payment_methods[enabled]": "true",
        "amount": "2500",
        "currency": "sar",
        "customer": "cus_Q1",
        "metadata[order]": "ord_7",
        "metadata[seats]": "2",
    }


def test_payments_idempotency_key_passes_through(stripe):
    fake, client = stripe
    body = {"amount": 1000, "currency": "sar"}
    first = ok(client.post("/payments/intents", json=body, headers={"Idempotency-Key": "checkout-42"}), "stripe", 201)
    again = ok(client.post("/payments/intents", json=body, headers={"Idempotency-Key": "checkout-42"}), "stripe", 201)
    assert first["id"] == again["id"]
    assert fake.last["headers"]["idempotency-key"] == "checkout-42"
    error = failed(
        client.post(
            "/payments/intents", json={"amount": 1, "currency": "sar"}, headers={"Idempotency-Key": "checkout-42"}
        ),
        "stripe",
        400,
        "IDEMPOTENCY_KEY_IN_USE",
    )
    assert error["message"].startswith("Keys for idempotent requests")


def test_payments_card_error_code_and_message_are_stripes(stripe):
    _, client = stripe
    error = failed(
        client.post("/payments/intents", json={"amount": 402, "currency": "sar", "payment_method_types": ["card"]}),
        "stripe",
        402,
        "CARD_DECLINED",
    )
    assert error["message"] == "Your card was declined."


def test_payments_intent_validation_happens_before_stripe(stripe):
    fake, client = stripe
    failed(
        client.post("/payments/intents", json={"amount": -5, "currency": "riyal"}), "stripe", 400, "VALIDATION_ERROR"
    )
    failed(
        client.post(
            "/payments/intents", content=b"amount=5", headers={"content-type": "application/x-www-form-urlencoded"}
        ),
        "stripe",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    assert fake.requests == []


def test_payments_create_customer(stripe):
    fake, client = stripe
    data = ok(
        client.post("/payments/customers", json={"email": "a@city.example", "name": "Amal", "balance": -100}),
        "stripe",
        201,
    )
    assert data["id"] == "cus_Q1"
    assert fake.last.form == {"email": "a@city.example", "name": "Amal"}  # balance is not the client's to set


def test_payments_list_methods_of_a_customer(stripe):
    fake, client = stripe
    r = client.get("/payments/methods/cus_Q1", params={"type": "card", "limit": 10, "expand[]": "data.customer"})
    assert ok(r, "stripe")[0]["id"] == "pm_1" and r.json()["meta"]["pagination"] == {"hasMore": False}
    assert fake.last["path"] == "/v1/customers/cus_Q1/payment_methods" and fake.last.args == {
        "type": "card",
        "limit": "10",
    }
    failed(client.get("/payments/methods/cus_404"), "stripe", 404, "RESOURCE_MISSING")
    seen = len(fake.requests)
    failed(client.get("/payments/methods/acct_1"), "stripe", 400, "INVALID_PARAMETER")
    assert len(fake.requests) == seen


def test_payments_subscription_items_and_expansion(stripe):
    fake, client = stripe
    data = ok(
        client.post(
            "/payments/subscriptions",
            json={
                "customer": "cus_Q1",
                "items": [{"price": "price_m", "quantity": 2}],
                "metadata": {"plan": "resident"},
            },
        ),
        "stripe",
        201,
    )
    assert data["latest_invoice"]["payment_intent"]["client_secret"] == "pi_9_secret"
    assert fake.last.form == {
        "customer": "cus_Q1",
        "metadata[plan]": "resident",
        "items[0][price]": "price_m",
        "items[0][quantity]": "2",
        "payment_behavior": "default_incomplete",
        "expand[0]": "latest_invoice.payment_intent",
    }


def test_payments_wrong_secret_is_stripes_401_without_the_secret(gateway):
    fake = fake_stripe()
    with fake.serve() as url:
        client = start(gateway, "payments", {"STRIPE_API_URL": url, "STRIPE_SECRET_KEY": "sk_test_wrong"})
        r = client.post("/payments/customers", json={"email": "a@city.example"})
    failed(r, "stripe", 401, "INVALID_REQUEST_ERROR")
    assert "sk_test_wrong" not in r.text


# Routes added for the shipped workflows' steps and compensations; their wire format is asserted
# by tests/test_workflows_shipped.py, which drives them through fakes of this backend.
WORKFLOW_STEPS = {"hold-payment", "cancel-payment-intent"}


def test_payments_every_route_has_a_contract():
    assert (
        route_names("payments")
        == {"create-payment-intent", "create-customer", "list-payment-methods", "create-subscription"} | WORKFLOW_STEPS
    )
