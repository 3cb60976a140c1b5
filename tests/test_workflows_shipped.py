"""The six shipped workflows (workflows.d) on the shipped gateway.yaml and routes.d, on a real Temporal dev
server, every backend faked in its own wire format: the happy paths, and the compensations that matter."""

from __future__ import annotations

import shutil
import threading
import uuid
from urllib.parse import parse_qsl

import httpx
import pytest

from gateway_engine import create_app
from tests.servers import serve
from tests.workflow_support import (
    JWT_SECRET,
    ROOT,
    FakeBackends,
    Stack,
    as_user,
    running_worker,
    start,
    temporal_server,
    wait_for,
    wait_until,
)

SERVICE_KEY = "svc-key-for-workflow-tests"
ORDER = {
    "id": "order_01JCITY",
    "display_id": 1042,
    "email": "ana@example.com",
    "currency_code": "eur",
    "total": 4200,
    "items": [
        {"title": "Olive oil", "variant_sku": "OIL-500", "quantity": 2, "unit_price": 15},
        {"title": "Bread", "variant_sku": "BREAD-1", "quantity": 1, "unit_price": 12},
    ],
}
DELIVERY = {
    "id": "order_d7Hq",
    "status": "dispatched",
    "tracking_number": {"tracking_number": "FLB-7731"},
    "driver_assigned": {"name": "Sam"},
}
OFFER = "openid-credential-offer://?credential_offer_uri=https%3A%2F%2Fissuer.example%2Foffer%2F123"
DOCUMENTS = {
    "/api/services/svc-42": {
        "id": "svc-42",
        "title": "Bulky waste pickup",
        "price": 3500,
        "currency": "EUR",
        "supplier": "City Waste Ltd",
        "itemCode": "SVC-BULKY",
    },
    "/api/events/evt-7": {
        "id": "evt-7",
        "title": "Harbour Jazz Night",
        "startsAt": "2026-12-12T19:00:00Z",
        "venue": "Old Harbour",
        "price": 2500,
        "currency": "EUR",
    },
}
ISSUER = {
    "issuerKey": {"type": "jwk", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "abc"}},
    "issuerDid": "did:key:z6Mk",
}
INPUTS = {
    "OrderFulfillment": {
        "cartId": "cart_01H",
        "email": "ana@example.com",
        "customer": "Ana Ruiz",
        "pickup": "place_wh1",
        "dropoff": "place_home",
    },
    "RideBooking": {
        "pickup": "place_home",
        "dropoff": "place_station",
        "customer": "cus_Ana",
        "paymentMethod": "pm_card",
        "email": "ana@example.com",
    },
    "ServiceBooking": {
        "serviceId": "svc-42",
        "date": "2026-12-01",
        "customer": "cus_Ana",
        "paymentMethod": "pm_card",
        "email": "ana@example.com",
    },
    "IdentityVerification": {
        **ISSUER,
        "credentialConfigurationId": "ResidentCard_jwt_vc_json",
        "subject": {"name": "Ana Ruiz"},
        "email": "ana@example.com",
    },
    "EventRegistration": {
        **ISSUER,
        "eventId": "evt-7",
        "customer": "cus_Ana",
        "paymentMethod": "pm_card",
        "email": "ana@example.com",
        "holder": {"name": "Ana Ruiz"},
    },
}
CALLS = {
    "OrderFulfillment": [
        "/store/carts/cart_01H/complete",
        "/api/resource/Sales Invoice",
        "/v1/orders",
        "/v3/mail/send",
    ],
    "RideBooking": ["/v1/service-quotes", "/v1/payment_intents", "/v1/orders", "/v3/mail/send"],
    "ServiceBooking": ["/api/services/svc-42", "/v1/payment_intents", "/api/resource/Purchase Order", "/v3/mail/send"],
    "IdentityVerification": ["/openid4vc/jwt/issue", "/api/verifications", "/v3/mail/send"],
    "EventRegistration": ["/api/events/evt-7", "/v1/payment_intents", "/openid4vc/jwt/issue", "/v3/mail/send"],
}


def city_answer(method: str, path: str, body):
    """Each backend's answer in its own format (Medusa, ERPNext, Fleetbase, Stripe, SendGrid, Payload, walt.id)."""
    if path.startswith("/store/carts/"):
        return 200, {"type": "order", "order": ORDER}, {}
    if path.startswith("/admin/orders/"):
        return 200, {"order": {**ORDER, "status": "canceled"}}, {}
    if path.startswith("/api/resource/"):
        doctype = path.split("/")[3]
        if method == "DELETE":
            return 202, {"message": "ok"}, {}
        name = "ACC-SINV-2026-00042" if doctype == "Sales Invoice" else "PUR-ORD-2026-00007"
        return 200, {"data": {"name": name, "docstatus": 0, **body}}, {}
    if path == "/v1/service-quotes":
        return 200, {"id": "quote_8fK2", "amount": 1850, "currency": "EUR"}, {}
    if path.startswith("/v1/orders"):
        return 200, ({"id": path.split("/")[3], "status": "canceled"} if method == "DELETE" else DELIVERY), {}
    if path.startswith("/v1/payment_intents"):
        form = dict(parse_qsl(body or ""))
        if path.endswith("/cancel"):
            return (
                200,
                {
                    "id": path.split("/")[3],
                    "object": "payment_intent",
                    "status": "canceled",
                    "cancellation_reason": form.get("cancellation_reason"),
                },
                {},
            )
        return (
            200,
            {
                "id": "pi_3Hold",
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "status": "requires_capture",
                "capture_method": form.get("capture_method"),
            },
            {},
        )
    if path == "/v3/mail/send":
        return 202, "", {"x-message-id": "msg-1"}
    if path in DOCUMENTS:
        return 200, DOCUMENTS[path], {}
    if path == "/api/verifications":
        return 201, {"doc": {"id": "ver-9", **body}, "message": "Verification successfully created."}, {}
    if path.startswith("/api/verifications/"):
        return 200, {"doc": {"id": path.split("/")[3]}, "message": "Deleted."}, {}
    if path == "/openid4vc/jwt/issue":
        return 200, OFFER, {}
    return 404, {"message": f"no fake for {method} {path}"}, {}


@pytest.fixture(scope="module")
def temporal():
    with temporal_server() as address:
        yield address


@pytest.fixture
def city(tmp_path, temporal):
    """The shipped config (gateway.yaml, routes.d, workflows.d on a fresh task queue), every backend faked."""
    fake = FakeBackends(city_answer)
    queue = f"tq-{uuid.uuid4().hex[:10]}"
    root = tmp_path / "config"
    shutil.copytree(ROOT / "routes.d", root / "routes.d")
    shutil.copy(ROOT / "gateway.yaml", root / "gateway.yaml")
    (root / "workflows.d").mkdir()
    for path in sorted((ROOT / "workflows.d").glob("*.yaml")):
        (root / "workflows.d" / path.name).write_text(
            path.read_text().replace("task_queue: gateway-workflows", f"task_queue: {queue}")
        )
    with serve(fake, lifespan="off") as url:
        env = {
            "JWT_SECRET": JWT_SECRET,
            "PAYLOAD_API_KEY": SERVICE_KEY,
            "TEMPORAL_ADDRESS": temporal,
            "SENDGRID_FROM": "noreply@city.example",
            **{
                name: url
                for name in (
                    "MEDUSA_API_URL",
                    "ERPNEXT_URL",
                    "FLEETBASE_URL",
                    "STRIPE_API_URL",
                    "SENDGRID_API_URL",
                    "PAYLOAD_CMS_URL",
                    "WALTID_URL",
                )
            },
            **{
                name: "secret-" + name.lower()
                for name in (
                    "MEDUSA_API_KEY",
                    "MEDUSA_SECRET_API_KEY",
                    "ERPNEXT_API_KEY",
                    "ERPNEXT_API_SECRET",
                    "FLEETBASE_API_KEY",
                    "STRIPE_SECRET_KEY",
                    "SENDGRID_API_KEY",
                    "WALTID_API_KEY",
                )
            },
        }
        with serve(create_app(str(root), env)) as gateway:
            yield Stack(root, gateway, env, queue, fake)


async def run(stack: Stack, workflow: str, data: dict, action: str | None = None) -> dict:
    user = as_user(f"ana-{uuid.uuid4().hex[:6]}")
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        started = await start(
            http, workflow, user, input={"action": action, "data": data} if action else {"data": data}
        )
        assert started.status_code == 201, started.text
        return await wait_for(http, started.json()["data"]["workflowId"], user, timeout=30)


@pytest.mark.parametrize("workflow", sorted(INPUTS))
async def test_workflows_shipped_happy_path(city, workflow):
    done = await run(city, workflow, INPUTS[workflow])
    assert done["status"] == "completed", done
    assert done["result"]["success"] is True
    assert city.fake.paths() == CALLS[workflow]
    result, cards = done["result"]["result"], done["result"]["artifacts"]
    if workflow == "OrderFulfillment":
        assert result == {
            "orderId": "order_01JCITY",
            "invoice": "ACC-SINV-2026-00042",
            "deliveryOrderId": "order_d7Hq",
            "emailed": True,
        }
        invoice = city.fake.bodies("/api/resource/Sales Invoice")[0]
        assert invoice["items"] == [
            {"item_code": "OIL-500", "qty": 2, "rate": 15},
            {"item_code": "BREAD-1", "qty": 1, "rate": 12},
        ]
        assert cards[0]["type"] == "order-tracker" and cards[0]["data"]["trackingNumber"] == "FLB-7731"
    elif workflow == "RideBooking":
        hold = dict(parse_qsl(city.fake.bodies("/v1/payment_intents")[0]))
        assert hold["capture_method"] == "manual" and hold["amount"] == "1850" and hold["payment_method"] == "pm_card"
        assert city.fake.calls[1]["headers"]["idempotency-key"].endswith("/hold")
        assert cards[0]["type"] == "confirmation-card" and cards[0]["data"]["driver"] == "Sam"
    elif workflow == "ServiceBooking":
        assert city.fake.bodies("/api/resource/Purchase Order")[0]["items"] == [
            {"item_code": "SVC-BULKY", "qty": 1, "rate": 35.0}
        ]
        assert result["job"] == "PUR-ORD-2026-00007"
    elif workflow == "IdentityVerification":
        assert result == {"offer": OFFER, "record": "ver-9", "status": "offered"}
        assert city.fake.bodies("/api/verifications")[0]["status"] == "offered"
        assert cards[0]["type"] == "agent-sync-card"
    else:
        issued = city.fake.bodies("/openid4vc/jwt/issue")[0]
        assert issued["credentialData"]["credentialSubject"]["payment"] == "pi_3Hold"
        assert result["ticketOffer"] == OFFER and OFFER in city.fake.bodies("/v3/mail/send")[0]["content"][0]["value"]


async def test_workflows_shipped_copilot_action_runs_the_matching_workflow(city):
    done = await run(city, "CopilotAction", INPUTS["RideBooking"], action="book-ride")
    assert done["status"] == "completed"
    assert city.fake.paths() == CALLS["RideBooking"]
    assert done["result"]["result"]["rideId"] == "order_d7Hq"
    assert [c["type"] for c in done["result"]["artifacts"]] == ["confirmation-card", "agent-sync-card"]
    assert done["result"]["artifacts"][1]["data"]["action"] == "book-ride"


async def test_workflows_shipped_ride_failed_assignment_cancels_the_hold(city):
    city.fake.fail["/v1/orders"] = (422, {"error": "No driver available in this zone."})
    done = await run(city, "CopilotAction", INPUTS["RideBooking"], action="book-ride")
    assert done["status"] == "failed"
    error = done["result"]["error"]
    assert error["step"] == "run" and error["code"] == "CHILD_WORKFLOW_FAILED"
    child = error["details"]
    assert child["error"]["step"] == "assign" and child["error"]["message"] == "No driver available in this zone."
    assert child["compensation"] == {"compensated": ["hold"], "failed": []}
    assert city.fake.paths()[-1] == "/v1/payment_intents/pi_3Hold/cancel"
    assert dict(parse_qsl(city.fake.bodies("/v1/payment_intents/pi_3Hold/cancel")[0])) == {
        "cancellation_reason": "abandoned"
    }


async def test_workflows_shipped_order_failure_at_delivery_undoes_invoice_then_order(city):
    city.fake.fail["/v1/orders"] = (422, {"errors": ["Dropoff place is outside every service area."]})
    done = await run(city, "OrderFulfillment", INPUTS["OrderFulfillment"])
    assert done["status"] == "failed"
    assert done["result"]["compensation"] == {"compensated": ["invoice", "order"], "failed": []}
    assert [(c["method"], c["path"]) for c in city.fake.calls[2:]] == [
        ("POST", "/v1/orders"),
        ("DELETE", "/api/resource/Sales Invoice/ACC-SINV-2026-00042"),
        ("POST", "/admin/orders/order_01JCITY/cancel"),
    ]
    assert city.fake.calls[-1]["headers"]["authorization"].startswith("Basic ")  # the admin API's secret key


UNDO = {
    "OrderFulfillment": [
        ("DELETE", "/v1/orders/order_d7Hq/cancel"),
        ("DELETE", "/api/resource/Sales Invoice/ACC-SINV-2026-00042"),
        ("POST", "/admin/orders/order_01JCITY/cancel"),
    ],
    "RideBooking": [("DELETE", "/v1/orders/order_d7Hq/cancel"), ("POST", "/v1/payment_intents/pi_3Hold/cancel")],
    "ServiceBooking": [
        ("DELETE", "/api/resource/Purchase Order/PUR-ORD-2026-00007"),
        ("POST", "/v1/payment_intents/pi_3Hold/cancel"),
    ],
    "IdentityVerification": [("DELETE", "/api/verifications/ver-9")],
    "EventRegistration": [("POST", "/v1/payment_intents/pi_3Hold/cancel")],
}


@pytest.mark.parametrize("workflow", [*sorted(UNDO), "CopilotAction"])
async def test_workflows_shipped_cancel_undoes_every_completed_step(city, workflow):
    """Cancelled while the confirmation email is being sent: every compensation route runs, newest first
    (a CopilotAction's child is cancelled with it and undoes its own steps)."""
    gate = threading.Event()
    city.fake.hold["/v3/mail/send"] = gate
    user = as_user(f"ana-{uuid.uuid4().hex[:6]}")
    action = {"action": "book-ride"} if workflow == "CopilotAction" else {}
    saga = "RideBooking" if workflow == "CopilotAction" else workflow
    async with running_worker(city), httpx.AsyncClient(base_url=city.url) as http:
        run_id = (await start(http, workflow, user, input={**action, "data": INPUTS[saga]})).json()["data"][
            "workflowId"
        ]
        await wait_until(lambda: "/v3/mail/send" in city.fake.paths())
        assert (await http.post(f"/api/gateway/workflows/{run_id}/cancel", headers=user)).status_code == 202
        gate.set()
        done = await wait_for(http, run_id, user, timeout=30)
    assert done["status"] == "canceled" and done["result"]["compensation"]["failed"] == []
    undone = [(c["method"], c["path"]) for c in city.fake.calls[len(CALLS[saga]) :]]
    assert undone == UNDO[saga]
