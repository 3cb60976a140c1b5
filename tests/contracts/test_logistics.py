"""routes.d/logistics.yaml against a fake Fleetbase FleetOps API v1."""

from __future__ import annotations

import pytest

from tests.contracts.fakes import FakeBackend, failed, json_answer, ok, route_names, start

KEY = "flb_live_7XrQ2"
ORDER = {"id": "order_8c2Kx1", "status": "created", "tracking_number": {"tracking_number": "CTY-0042"}}


def fake_fleetbase() -> FakeBackend:
    fake = FakeBackend(
        lambda h: h.get("authorization") == f"Bearer {KEY}",
        json_answer({"errors": ["Oops! The api credentials provided were not valid"]}, 401),
    )

    def collection(kind):
        async def listing(request, rec):
            return json_answer([{"id": f"{kind}_1", "name": f"{kind} one"}])

        return listing

    for kind in ("fleets", "vehicles", "drivers", "zones"):
        fake.route(f"/v1/{kind}", "GET")(collection(kind.rstrip("s")))

    @fake.route("/v1/orders", "POST")
    async def create_order(request, rec):
        body = rec.json
        if not (("pickup" in body and "dropoff" in body) or "payload" in body):
            return json_answer({"errors": ["A pickup and dropoff, or a payload, is required."]}, 422)
        return json_answer({**ORDER, "pickup": body.get("pickup"), "dropoff": body.get("dropoff")})

    @fake.route("/v1/orders/{id}", "GET")
    async def find_order(request, rec):
        if request.path_params["id"] != ORDER["id"]:
            return json_answer({"error": "Order resource not found."}, 404)
        return json_answer(ORDER)

    @fake.route("/v1/orders/{id}/tracker", "GET")
    async def tracker(request, rec):
        return json_answer(
            {
                "driver_current_location": {"type": "Point", "coordinates": [46.67, 24.71]},
                "progress_percentage": 40,
                "estimated_completion_time": 720,
            }
        )

    @fake.route("/v1/service-quotes", "GET")
    async def quotes(request, rec):
        args = rec.args
        if not (("pickup" in args and "dropoff" in args) or "payload" in args):
            return json_answer({"errors": ["pickup and dropoff are required"]}, 400)
        return json_answer(
            [
                {
                    "id": "quote_1",
                    "amount": 1500,
                    "currency": args.get("currency", "SAR"),
                    "service_rate": {"service_type": args.get("service_type")},
                }
            ]
        )

    return fake


@pytest.fixture
def fleet(gateway):
    fake = fake_fleetbase()
    with fake.serve() as url:
        yield (
            fake,
            start(
                gateway,
                "logistics",
                {"FLEETBASE_URL": url, "FLEETBASE_API_KEY": KEY, "FLEETBASE_ORG_ID": "org-29ae887c"},
            ),
        )


@pytest.mark.parametrize("resource", ["fleets", "vehicles", "drivers", "zones"])
def test_logistics_lists_send_the_bearer_key_and_paging_only(fleet, resource):
    fake, client = fleet
    data = ok(
        client.get(
            f"/logistics/{resource}",
            params={"limit": 25, "offset": 0, "sort": "-created_at", "company_uuid": "another-org"},
        ),
        "fleetbase",
    )
    assert data[0]["id"] == resource.rstrip("s") + "_1"
    rec = fake.last
    assert rec["path"] == f"/v1/{resource}" and rec["headers"]["authorization"] == f"Bearer {KEY}"
    assert rec.args == {"limit": "25", "offset": "0", "sort": "-created_at"}  # no cross-organization filters


def test_logistics_create_order_posts_the_known_fields_as_json(fleet):
    fake, client = fleet
    data = ok(
        client.post(
            "/logistics/orders",
            json={
                "pickup": "place_a1",
                "dropoff": "place_b2",
                "notes": "fragile",
                "dispatch": True,
                "company_uuid": "another-org",
            },
        ),
        "fleetbase",
        201,
    )
    assert data["tracking_number"]["tracking_number"] == "CTY-0042"
    rec = fake.last
    assert rec["method"] == "POST" and rec["path"] == "/v1/orders"
    assert rec["headers"]["content-type"] == "application/json"
    assert rec.json == {"pickup": "place_a1", "dropoff": "place_b2", "notes": "fragile", "dispatch": True}


def test_logistics_create_order_needs_places_or_a_payload(fleet):
    fake, client = fleet
    failed(client.post("/logistics/orders", json={"notes": "x"}), "fleetbase", 400, "VALIDATION_ERROR")
    assert fake.requests == []


def test_logistics_get_and_track_order(fleet):
    fake, client = fleet
    assert ok(client.get("/logistics/orders/order_8c2Kx1"), "fleetbase")["status"] == "created"
    assert fake.last["path"] == "/v1/orders/order_8c2Kx1"
    track = ok(client.get("/logistics/orders/order_8c2Kx1/track"), "fleetbase")
    assert track["progress_percentage"] == 40
    assert fake.last["path"] == "/v1/orders/order_8c2Kx1/tracker"
    error = failed(client.get("/logistics/orders/order_missing"), "fleetbase", 404, "UPSTREAM_ERROR")
    assert error["message"] == "Order resource not found."


def test_logistics_quotes_become_a_get_with_query_parameters(fleet):
    fake, client = fleet
    data = ok(
        client.post(
            "/logistics/quotes",
            json={
                "pickup": "place_a1",
                "dropoff": "place_b2",
                "service_type": "parcel",
                "currency": "SAR",
                "single": True,
            },
        ),
        "fleetbase",
    )
    assert data[0]["amount"] == 1500
    rec = fake.last
    assert rec["method"] == "GET" and rec["path"] == "/v1/service-quotes"
    assert rec.args == {
        "pickup": "place_a1",
        "dropoff": "place_b2",
        "service_type": "parcel",
        "currency": "SAR",
        "single": "true",
    }
    assert rec["body"] == b""
    failed(
        client.post("/logistics/quotes", json={"pickup": "https://evil.example"}), "fleetbase", 400, "VALIDATION_ERROR"
    )


def test_logistics_wrong_key_is_fleetbases_401(gateway):
    fake = fake_fleetbase()
    with fake.serve() as url:
        client = start(gateway, "logistics", {"FLEETBASE_URL": url, "FLEETBASE_API_KEY": "flb_live_wrong"})
        error = failed(client.get("/logistics/fleets"), "fleetbase", 401, "UPSTREAM_ERROR")
    assert error["message"] == "Oops! The api credentials provided were not valid"
    assert "flb_live_wrong" not in str(error)


# Routes added for the shipped workflows' steps and compensations; their wire format is asserted
# by tests/test_workflows_shipped.py, which drives them through fakes of this backend.
WORKFLOW_STEPS = {"cancel-order"}


def test_logistics_every_route_has_a_contract():
    assert (
        route_names("logistics")
        == {
            "list-fleets",
            "list-vehicles",
            "list-drivers",
            "create-order",
            "get-order",
            "track-order",
            "get-quotes",
            "list-zones",
        }
        | WORKFLOW_STEPS
    )
