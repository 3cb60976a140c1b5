"""routes.d/commerce.yaml against a fake Medusa v2 Store API."""

from __future__ import annotations

import pytest

from tests.contracts.fakes import FakeBackend, failed, json_answer, ok, route_names, start

PK = "pk_01JCITYSTOREFRONT"
CUSTOMER_TOKEN = "customer-jwt-abc"
PRODUCTS = [
    {"id": "prod_01A", "title": "Dates box", "handle": "dates-box"},
    {"id": "prod_01B", "title": "Coffee", "handle": "coffee"},
]


def listing(key, items, request):
    args = request.query_params
    return json_answer(
        {key: items, "count": len(items), "offset": int(args.get("offset", 0)), "limit": int(args.get("limit", 50))}
    )


def not_found(what):
    return json_answer({"type": "not_found", "message": f"{what} was not found"}, 404)


def fake_medusa() -> FakeBackend:
    fake = FakeBackend(
        lambda h: h.get("x-publishable-api-key") == PK,
        json_answer(
            {
                "type": "not_allowed",
                "message": "Publishable API key required in the request "
                "header: x-publishable-api-key. You can manage your keys in settings in the dashboard.",
            },
            400,
        ),
    )
    carts = {}

    @fake.route("/store/products", "GET")
    async def products(request, rec):
        return listing("products", PRODUCTS, request)

    @fake.route("/store/products/{id}", "GET")
    async def product(request, rec):
        found = [p for p in PRODUCTS if p["id"] == request.path_params["id"]]
        return (
            json_answer({"product": found[0]}) if found else not_found(f"Product with id: {request.path_params['id']}")
        )

    @fake.route("/store/product-categories", "GET")
    async def categories(request, rec):
        return listing("product_categories", [{"id": "pcat_1", "name": "Food", "handle": "food"}], request)

    @fake.route("/store/carts", "POST")
    async def create_cart(request, rec):
        assert rec["headers"]["content-type"] == "application/json"
        body = rec.json
        cart = {
            "id": "cart_01NEW",
            "region_id": body.get("region_id"),
            "email": body.get("email"),
            "items": [{"variant_id": i["variant_id"], "quantity": i["quantity"]} for i in body.get("items", [])],
        }
        carts[cart["id"]] = cart
        return json_answer({"cart": cart})

    @fake.route("/store/carts/{id}/line-items", "POST")
    async def add_item(request, rec):
        cart = carts.get(request.path_params["id"])
        if cart is None:
            return not_found(f"Cart id {request.path_params['id']}")
        cart["items"].append({"variant_id": rec.json["variant_id"], "quantity": rec.json["quantity"]})
        return json_answer({"cart": cart})

    @fake.route("/store/carts/{id}", "GET")
    async def get_cart(request, rec):
        cart = carts.get(request.path_params["id"])
        return json_answer({"cart": cart}) if cart else not_found(f"Cart id {request.path_params['id']}")

    @fake.route("/store/carts/{id}/complete", "POST")
    async def complete(request, rec):
        cart = carts.get(request.path_params["id"])
        if cart is None:
            return not_found(f"Cart id {request.path_params['id']}")
        if not cart["items"]:
            return json_answer(
                {
                    "type": "cart",
                    "cart": cart,
                    "error": {"message": "Payment sessions are required to complete cart", "name": "Error"},
                }
            )
        return json_answer({"type": "order", "order": {"id": "order_01X", "items": cart["items"], "status": "pending"}})

    @fake.route("/store/orders", "GET")
    async def orders(request, rec):
        if rec["headers"].get("authorization") != f"Bearer {CUSTOMER_TOKEN}":
            return json_answer({"message": "Unauthorized", "type": "unauthorized"}, 401)
        return listing("orders", [{"id": "order_01X", "status": "pending"}], request)

    @fake.route("/store/orders/{id}", "GET")
    async def order(request, rec):
        return json_answer({"order": {"id": request.path_params["id"], "status": "pending"}})

    @fake.route("/store/stores", "GET")
    async def stores(request, rec):
        return json_answer({"stores": [{"id": "store_1", "name": "Old Town Market", "is_active": True}]})

    return fake


@pytest.fixture
def medusa(gateway):
    fake = fake_medusa()
    with fake.serve() as url:
        yield fake, start(gateway, "commerce", {"MEDUSA_API_URL": url, "MEDUSA_API_KEY": PK})


def test_commerce_list_products_sends_the_publishable_key_and_maps_pagination(medusa):
    fake, client = medusa
    r = client.get(
        "/commerce/products", params={"q": "dates", "limit": 2, "offset": 0, "region_id": "reg_1", "evil": 1}
    )
    assert [p["id"] for p in ok(r, "medusa")] == ["prod_01A", "prod_01B"]
    assert r.json()["meta"]["pagination"] == {"total": 2, "offset": 0, "limit": 2}
    rec = fake.last
    assert rec["path"] == "/store/products" and rec["headers"]["x-publishable-api-key"] == PK
    assert rec.args == {"q": "dates", "limit": "2", "offset": "0", "region_id": "reg_1"}


def test_commerce_wrong_publishable_key_is_medusas_400(gateway):
    fake = fake_medusa()
    with fake.serve() as url:
        client = start(gateway, "commerce", {"MEDUSA_API_URL": url, "MEDUSA_API_KEY": "pk_wrong"})
        error = failed(client.get("/commerce/products"), "medusa", 400, "NOT_ALLOWED")
    assert error["message"].startswith("Publishable API key required")


def test_commerce_get_product_and_not_found(medusa):
    fake, client = medusa
    assert ok(client.get("/commerce/products/prod_01B"), "medusa")["title"] == "Coffee"
    assert fake.last["path"] == "/store/products/prod_01B"
    error = failed(client.get("/commerce/products/prod_nope"), "medusa", 404, "NOT_FOUND")
    assert error["message"] == "Product with id: prod_nope was not found"
    failed(client.get("/commerce/products/a%2Fb"), "medusa", 400, "INVALID_PARAMETER")


def test_commerce_categories(medusa):
    fake, client = medusa
    assert (
        ok(client.get("/commerce/categories", params={"include_descendants_tree": "true"}), "medusa")[0]["handle"]
        == "food"
    )
    assert fake.last["path"] == "/store/product-categories" and fake.last.args == {"include_descendants_tree": "true"}


def test_commerce_cart_flow_create_add_get_complete(medusa):
    fake, client = medusa
    cart = ok(
        client.post(
            "/commerce/cart",
            json={
                "region_id": "reg_1",
                "email": "a@city.example",
                "items": [{"variant_id": "variant_1", "quantity": 2}],
                "total": 0,
            },
        ),
        "medusa",
        201,
    )
    assert fake.last.json == {
        "region_id": "reg_1",
        "email": "a@city.example",
        "items": [{"variant_id": "variant_1", "quantity": 2}],
    }  # `total` is not the client's to set
    cart = ok(
        client.post(f"/commerce/cart/{cart['id']}/items", json={"variant_id": "variant_2", "quantity": 1}), "medusa"
    )
    assert fake.last["path"] == "/store/carts/cart_01NEW/line-items" and fake.last.json == {
        "variant_id": "variant_2",
        "quantity": 1,
    }
    assert len(ok(client.get("/commerce/cart/cart_01NEW"), "medusa")["items"]) == 2
    order = ok(client.post("/commerce/orders", json={"cart_id": "cart_01NEW"}), "medusa", 201)
    assert order["id"] == "order_01X"
    assert fake.last["method"] == "POST" and fake.last["path"] == "/store/carts/cart_01NEW/complete"
    assert fake.last.json == {}


def test_commerce_add_item_validates_quantity(medusa):
    fake, client = medusa
    failed(
        client.post("/commerce/cart/cart_01NEW/items", json={"variant_id": "v", "quantity": 0}),
        "medusa",
        400,
        "VALIDATION_ERROR",
    )
    assert fake.requests == []


def test_commerce_complete_failure_is_409_and_bad_cart_ids_never_reach_medusa(medusa):
    fake, client = medusa
    ok(client.post("/commerce/cart", json={"region_id": "reg_1"}), "medusa", 201)
    failed(client.post("/commerce/orders", json={"cart_id": "cart_01NEW"}), "medusa", 409, "CART_NOT_COMPLETED")
    seen = len(fake.requests)
    failed(client.post("/commerce/orders", json={"cart_id": "../admin"}), "medusa", 400, "INVALID_PARAMETER")
    failed(
        client.post("/commerce/orders", json={}), "medusa", 400, "VALIDATION_ERROR"
    )  # the body schema is checked before computed parameters
    assert len(fake.requests) == seen


def test_commerce_list_orders_uses_the_customer_token(medusa):
    fake, client = medusa
    data = ok(client.get("/commerce/orders", headers={"x-customer-token": CUSTOMER_TOKEN}), "medusa")
    assert data == [{"id": "order_01X", "status": "pending"}]
    assert fake.last["headers"]["authorization"] == f"Bearer {CUSTOMER_TOKEN}"
    failed(client.get("/commerce/orders"), "medusa", 401, "UNAUTHORIZED")


def test_commerce_get_order_and_stores(medusa):
    fake, client = medusa
    assert ok(client.get("/commerce/orders/order_01X"), "medusa")["id"] == "order_01X"
    assert fake.last["path"] == "/store/orders/order_01X" and "authorization" not in fake.last["headers"]
    assert ok(client.get("/commerce/stores", params={"x": 1}), "medusa")[0]["name"] == "Old Town Market"
    assert fake.last["path"] == "/store/stores" and fake.last["query"] == ""


def test_commerce_client_cannot_choose_the_publishable_key(medusa):
    fake, client = medusa
    ok(client.get("/commerce/stores", headers={"x-publishable-api-key": "pk_other_channel"}), "medusa")
    sent = [v for k, v in fake.last["raw_headers"] if k == "x-publishable-api-key"]
    assert sent == [PK]


def test_commerce_every_route_has_a_contract():
    assert route_names("commerce") == {
        "list-products",
        "get-product",
        "list-categories",
        "create-cart",
        "add-cart-item",
        "get-cart",
        "create-order",
        "list-orders",
        "get-order",
        "list-stores",
    }
