"""routes.d/erp.yaml against a fake ERPNext (Frappe REST API)."""

from __future__ import annotations

import json

import pytest

from tests.contracts.fakes import FakeBackend, failed, json_answer, ok, route_names, start

API_KEY, API_SECRET = "a1b2c3d4e5", "f6g7h8i9j0"
RECORDS = {
    "Customer": [
        {
            "name": "CUST-0001",
            "customer_name": "Al Noor Bakery",
            "customer_group": "Commercial",
            "customer_type": "Company",
            "territory": "Riyadh",
            "email_id": "noor@example.sa",
            "mobile_no": "1",
            "tax_id": "300000000000003",
        }
    ],
    "Sales Invoice": [
        {"name": "ACC-SINV-2026-00001", "customer": "CUST-0001", "status": "Unpaid", "grand_total": 115.0}
    ],
    "Bin": [{"item_code": "WATER-1L", "warehouse": "Stores - C", "actual_qty": 40.0}],
    "Employee": [{"name": "HR-EMP-00001", "employee_name": "Sara", "status": "Active", "department": "Parks"}],
}


def frappe_error(status, exc_type, text):
    return json_answer(
        {
            "exc_type": exc_type,
            "exception": f"frappe.exceptions.{exc_type}: {text}",
            "_server_messages": json.dumps([json.dumps({"message": text})]),
        },
        status,
    )


def fake_frappe() -> FakeBackend:
    fake = FakeBackend(
        lambda h: h.get("authorization") == f"token {API_KEY}:{API_SECRET}",
        frappe_error(401, "AuthenticationError", "Invalid API key"),
    )

    @fake.route("/api/resource/{doctype}", "GET")
    async def get_list(request, rec):
        args = rec.args
        fields = json.loads(args.get("fields", '["name"]'))
        filters = json.loads(args.get("filters", "[]"))
        length = int(args.get("limit_page_length", 20))
        assert isinstance(fields, list) and all(isinstance(f, list) and len(f) == 3 for f in filters)
        assert 1 <= length <= 100, "limit_page_length=0 would return every record"
        rows = [
            r
            for r in RECORDS.get(request.path_params["doctype"], [])
            if all(op != "=" or r.get(field) == value for field, op, value in filters)
        ]
        start_at = int(args.get("limit_start", 0))
        return json_answer({"data": [{f: r.get(f) for f in fields} for r in rows[start_at : start_at + length]]})

    @fake.route("/api/resource/Sales Invoice/{name}", "GET")
    async def get_invoice(request, rec):
        found = [r for r in RECORDS["Sales Invoice"] if r["name"] == request.path_params["name"]]
        if not found:
            return frappe_error(404, "DoesNotExistError", f"Sales Invoice {request.path_params['name']} not found")
        return json_answer({"data": found[0]})

    @fake.route("/api/resource/Purchase Order", "POST")
    async def create_po(request, rec):
        assert rec["headers"]["content-type"] == "application/json"
        doc = rec.json
        if not doc.get("items"):
            return frappe_error(417, "MandatoryError", "Items are required")
        return json_answer({"data": {**doc, "doctype": "Purchase Order", "name": "PUR-ORD-2026-00007", "docstatus": 0}})

    @fake.route("/api/method/frappe.desk.query_report.run", "GET")
    async def run_report(request, rec):
        args = rec.args
        filters = json.loads(args["filters"])
        if "company" not in filters:
            return frappe_error(417, "ValidationError", "Filter Company is mandatory")
        return json_answer(
            {
                "message": {
                    "columns": [{"fieldname": "account"}, {"fieldname": "balance"}],
                    "result": [{"account": "Cash", "balance": 10}],
                    "report_summary": None,
                    "report_name": args["report_name"],
                }
            }
        )

    return fake


@pytest.fixture
def erp(gateway):
    fake = fake_frappe()
    with fake.serve() as url:
        yield (
            fake,
            start(gateway, "erp", {"ERPNEXT_URL": url, "ERPNEXT_API_KEY": API_KEY, "ERPNEXT_API_SECRET": API_SECRET}),
        )


def test_erp_list_customers_sends_fields_filters_and_paging_as_frappe_expects(erp):
    fake, client = erp
    r = client.get("/erp/customers", params={"search": "Noor", "limit": 10, "offset": 0})
    data = ok(r, "erpnext")
    assert data[0]["customer_name"] == "Al Noor Bakery" and "tax_id" not in data[0]
    rec = fake.last
    assert rec["path"] == "/api/resource/Customer"
    assert rec["headers"]["authorization"] == f"token {API_KEY}:{API_SECRET}"
    args = rec.args
    assert json.loads(args["fields"])[:2] == ["name", "customer_name"]
    assert json.loads(args["filters"]) == [["customer_name", "like", "%Noor%"]]
    assert (args["limit_start"], args["limit_page_length"], args["order_by"]) == ("0", "10", "modified desc")
    assert r.json()["meta"]["pagination"] == {"offset": 0, "limit": 10, "count": 1}


@pytest.mark.parametrize("limit, sent", [("0", "1"), ("5000", "100"), ("abc", "1"), (None, "20")])
def test_erp_page_length_is_always_between_1_and_100(erp, limit, sent):
    fake, client = erp
    ok(client.get("/erp/employees", params={} if limit is None else {"limit": limit}), "erpnext")
    assert fake.last.args["limit_page_length"] == sent


def test_erp_invoices_list_filters_and_detail(erp):
    fake, client = erp
    ok(client.get("/erp/invoices", params={"customer": "CUST-0001", "status": "Unpaid"}), "erpnext")
    assert fake.last["raw_path"] == "/api/resource/Sales%20Invoice"
    assert json.loads(fake.last.args["filters"]) == [["customer", "=", "CUST-0001"], ["status", "=", "Unpaid"]]
    invoice = ok(client.get("/erp/invoices/ACC-SINV-2026-00001"), "erpnext")
    assert invoice["grand_total"] == 115.0
    assert fake.last["raw_path"] == "/api/resource/Sales%20Invoice/ACC-SINV-2026-00001"
    error = failed(client.get("/erp/invoices/ACC-SINV-2026-09999"), "erpnext", 404, "NOT_FOUND")
    assert error["message"] == "Sales Invoice ACC-SINV-2026-09999 not found"


def test_erp_inventory_reads_bins(erp):
    fake, client = erp
    data = ok(client.get("/erp/inventory", params={"warehouse": "Stores - C"}), "erpnext")
    assert data == [
        {
            "item_code": "WATER-1L",
            "warehouse": "Stores - C",
            "actual_qty": 40.0,
            "reserved_qty": None,
            "ordered_qty": None,
            "projected_qty": None,
            "stock_uom": None,
        }
    ]
    assert fake.last["path"] == "/api/resource/Bin"
    assert json.loads(fake.last.args["filters"]) == [["warehouse", "=", "Stores - C"]]


def test_erp_employees_default_to_active_without_personal_fields(erp):
    fake, client = erp
    ok(client.get("/erp/employees", params={"department": "Parks"}), "erpnext")
    args = fake.last.args
    assert json.loads(args["filters"]) == [["status", "=", "Active"], ["department", "=", "Parks"]]
    assert not {"date_of_birth", "ctc", "personal_email", "cell_number"} & set(json.loads(args["fields"]))


def test_erp_report_type_maps_to_the_report_name_and_query_to_filters(erp):
    fake, client = erp
    data = ok(
        client.get("/erp/reports/profit-and-loss", params={"company": "City Co", "from_date": "2026-01-01"}), "erpnext"
    )
    assert data["report"] == "profit-and-loss" and data["rows"] == [{"account": "Cash", "balance": 10}]
    args = fake.last.args
    assert args["report_name"] == "Profit and Loss Statement"
    assert json.loads(args["filters"]) == {"company": "City Co", "from_date": "2026-01-01"}
    error = failed(client.get("/erp/reports/general-ledger"), "erpnext", 417, "VALIDATION_ERROR")
    assert error["message"] == "Filter Company is mandatory"
    seen = len(fake.requests)
    failed(client.get("/erp/reports/Salary Register"), "erpnext", 400, "INVALID_PARAMETER")
    failed(client.get("/erp/reports/employee-birthday"), "erpnext", 400, "INVALID_PARAMETER")
    assert len(fake.requests) == seen


def test_erp_create_purchase_order_posts_the_document(erp):
    fake, client = erp
    po = ok(
        client.post(
            "/erp/purchase-orders",
            json={
                "supplier": "Water Co",
                "schedule_date": "2026-12-01",
                "docstatus": 1,
                "items": [{"item_code": "WATER-1L", "qty": 100, "rate": 1.5, "amount": 1}],
            },
        ),
        "erpnext",
        201,
    )
    assert po["name"] == "PUR-ORD-2026-00007" and po["docstatus"] == 0
    rec = fake.last
    assert rec["method"] == "POST" and rec["raw_path"] == "/api/resource/Purchase%20Order"
    assert rec.json == {
        "supplier": "Water Co",
        "schedule_date": "2026-12-01",
        "items": [{"item_code": "WATER-1L", "qty": 100, "rate": 1.5}],
    }  # never submitted (docstatus)
    error = failed(
        client.post("/erp/purchase-orders", json={"supplier": "x", "schedule_date": "2026-1-1", "items": []}),
        "erpnext",
        400,
        "VALIDATION_ERROR",
    )
    assert {d["path"] for d in error["details"]} == {"$.schedule_date", "$.items"}


def test_erp_wrong_secret_is_frappes_401_and_never_echoed(gateway):
    fake = fake_frappe()
    with fake.serve() as url:
        client = start(
            gateway, "erp", {"ERPNEXT_URL": url, "ERPNEXT_API_KEY": API_KEY, "ERPNEXT_API_SECRET": "nope-secret"}
        )
        r = client.get("/erp/customers")
    failed(r, "erpnext", 401, "UPSTREAM_ERROR")
    assert "nope-secret" not in r.text


# Routes added for the shipped workflows' steps and compensations; their wire format is asserted
# by tests/test_workflows_shipped.py, which drives them through fakes of this backend.
WORKFLOW_STEPS = {"create-invoice", "delete-invoice", "delete-purchase-order"}


def test_erp_every_route_has_a_contract():
    assert (
        route_names("erp")
        == {
            "list-customers",
            "list-invoices",
            "get-invoice",
            "list-inventory",
            "run-report",
            "list-employees",
            "create-purchase-order",
        }
        | WORKFLOW_STEPS
    )
