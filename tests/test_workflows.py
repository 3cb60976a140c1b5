"""Workflows on a real Temporal dev server, through the gateway over HTTP, steps calling fake backends:
compensation order, signals, cancel, list, ownership, idempotent starts, a worker restart, validation."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import uuid

import httpx
import pytest

from gateway_engine import create_app, load_config
from gateway_engine.cli.main import run
from gateway_engine.runtime.invoke import invoke
from tests.servers import free_port, serve, write_config
from tests.workflow_support import (
    ADMIN,
    JWT_SECRET,
    PLAIN_KEY,
    ROOT,
    FakeBackends,
    Stack,
    as_user,
    gateway_yaml,
    running_worker,
    start,
    temporal_server,
    wait_for,
    wait_until,
)

SHOP = """backend: shop
prefix: /shop
upstream: {{url: "{url}", timeout: 5s}}
routes:
  - {{name: step, method: POST, path: "/steps/{{kind}}", upstream_path: "/steps/{{kind}}"}}
  - {{name: undo, method: POST, path: "/steps/{{kind}}/{{id}}/undo", upstream_path: "/steps/{{kind}}/{{id}}/undo"}}
"""
CALL = """    call: shop.step
    retry: {{attempts: 2, backoff: 100ms}}
    with: {{params: {{kind: {kind}}}, body: {body}}}"""
UNDO = """    compensate:
      call: shop.undo
      retry: {{attempts: 2, backoff: 100ms}}
      with: {{params: {{kind: {kind}, id: "{{{{ steps.{kind}.result.id }}}}"}}}}"""
SAGAS = {
    "trio": f"""workflow: Trio
task_queue: QUEUE
input: {{type: object, required: [data], properties: {{data: {{type: object, required: [n], properties: {{n: {{type: integer}}}}}}}}}}
steps:
  - name: a
{CALL.format(kind="a", body='{n: "{{ input.data.n }}"}')}
{UNDO.format(kind="a")}
  - name: b
{CALL.format(kind="b", body='{a: "{{ steps.a.result.id }}"}')}
{UNDO.format(kind="b")}
  - name: big
    when: "{{{{ input.data.n > 100 }}}}"
{CALL.format(kind="big", body="{}")}
  - name: c
{CALL.format(kind="c", body='{a: "{{ steps.a.result.id }}", b: "{{ steps.b.result.id }}"}')}
result: {{a: "{{{{ steps.a.result.id }}}}", c: "{{{{ steps.c.result.id }}}}", big: "{{{{ steps.big.skipped }}}}"}}
artifacts:
  - {{type: confirmation-card, data: {{title: "Done {{{{ input.data.n }}}}"}}}}
  - {{type: order-tracker, data: {{}}, when: "{{{{ false }}}}"}}
""",
    "approval": f"""workflow: Approval
task_queue: QUEUE
steps:
  - name: a
{CALL.format(kind="a", body="{}")}
{UNDO.format(kind="a")}
  - name: approval
    wait: {{signal: approve, timeout: 60s}}
  - name: b
{CALL.format(kind="b", body='{by: "{{ steps.approval.result.by }}"}')}
result: "{{{{ steps.b.result }}}}"
""",
    "deadline": f"""workflow: Deadline
task_queue: QUEUE
timeout: 1s
steps:
  - name: a
{CALL.format(kind="a", body="{}")}
{UNDO.format(kind="a")}
  - name: approval
    wait: {{signal: approve, timeout: 60s}}
""",
    "slow": f"""workflow: Slow
task_queue: QUEUE
steps:
  - name: a
{CALL.format(kind="a", body="{}")}
  - name: slow
    timeout: 2s
{CALL.format(kind="slow", body="{}").replace("attempts: 2", "attempts: 5")}
result: "{{{{ steps.slow.result.id }}}}"
""",
}


def shop_answer(method: str, path: str, body):
    parts = path.strip("/").split("/")
    return 200, {"id": f"{parts[1]}-1", "kind": parts[1], "received": body}, {}


@pytest.fixture(scope="module")
def temporal():
    with temporal_server() as address:
        yield address


@pytest.fixture
def stack(tmp_path, temporal):
    fake = FakeBackends(shop_answer)
    queue = f"tq-{uuid.uuid4().hex[:10]}"
    with serve(fake, lifespan="off") as fake_url:
        root = write_config(
            tmp_path / "config",
            gateway_yaml(),
            {"shop": SHOP.format(url=fake_url), "workflows": (ROOT / "routes.d" / "workflows.yaml").read_text()},
        )
        (root / "workflows.d").mkdir()
        for name, text in SAGAS.items():
            (root / "workflows.d" / f"{name}.yaml").write_text(text.replace("QUEUE", queue))
        env = {"JWT_SECRET": JWT_SECRET, "TEMPORAL_ADDRESS": temporal}
        with serve(create_app(str(root), env)) as url:
            yield Stack(root, url, env, queue, fake)


async def test_workflows_happy_path_runs_steps_skips_and_renders(stack):
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        started = await start(http, "Trio", as_user("ana"), input={"action": "x", "data": {"n": 7}})
        assert started.status_code == 201, started.text
        run_id = started.json()["data"]["workflowId"]
        done = await wait_for(http, run_id, as_user("ana"))
    assert done["status"] == "completed" and done["step"] is None
    assert done["result"] == {
        "success": True,
        "result": {"a": "a-1", "c": "c-1", "big": True},
        "artifacts": [{"type": "confirmation-card", "data": {"title": "Done 7"}}],
    }
    assert stack.fake.paths() == ["/steps/a", "/steps/b", "/steps/c"]
    assert stack.fake.bodies("/steps/c") == [{"a": "a-1", "b": "b-1"}]
    assert stack.fake.calls[0]["headers"]["idempotency-key"].endswith("/a")


async def test_workflows_failure_at_step_three_compensates_two_then_one(stack):
    stack.fake.fail["/steps/c"] = (422, {"message": "no stock"})
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        run_id = (await start(http, "Trio", as_user("ana"), input={"data": {"n": 1}})).json()["data"]["workflowId"]
        done = await wait_for(http, run_id, as_user("ana"))
    assert done["status"] == "failed"
    assert done["result"]["success"] is False
    assert done["result"]["error"]["step"] == "c" and done["result"]["error"]["code"] == "UPSTREAM_ERROR"
    assert done["result"]["compensation"] == {"compensated": ["b", "a"], "failed": []}
    # a 4xx is final: step c was called once, then b and a were undone in reverse order
    assert stack.fake.paths() == ["/steps/a", "/steps/b", "/steps/c", "/steps/b/b-1/undo", "/steps/a/a-1/undo"]


async def test_workflows_failed_compensation_is_reported(stack):
    stack.fake.fail["/steps/c"] = (503, {"message": "down"})
    stack.fake.fail["/steps/a/a-1/undo"] = (500, {"message": "cannot undo"})
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        run_id = (await start(http, "Trio", ADMIN, input={"userId": "ana", "data": {"n": 1}})).json()["data"][
            "workflowId"
        ]
        done = await wait_for(http, run_id, as_user("ana"))  # started for ana by a service: ana owns it
    report = done["result"]["compensation"]
    assert report["compensated"] == ["b"]
    assert report["failed"][0]["step"] == "a" and report["failed"][0]["code"] == "UPSTREAM_ERROR"
    assert stack.fake.paths().count("/steps/c") == 2  # a 503 is retried (attempts: 2)
    assert stack.fake.paths().count("/steps/a/a-1/undo") == 2


async def test_workflows_signal_resumes_the_waiting_step(stack):
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        run_id = (await start(http, "Approval", as_user("ana"))).json()["data"]["workflowId"]
        await wait_for(http, run_id, as_user("ana"), lambda d: d["step"] == "approval")
        unknown = await http.post(
            f"/api/gateway/workflows/{run_id}/signal", json={"name": "nope"}, headers=as_user("ana")
        )
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "UNKNOWN_SIGNAL"
        sent = await http.post(
            f"/api/gateway/workflows/{run_id}/signal",
            json={"name": "approve", "args": [{"by": "ops"}]},
            headers=as_user("ana"),
        )
        assert sent.status_code == 202, sent.text
        done = await wait_for(http, run_id, as_user("ana"))
        again = await http.post(
            f"/api/gateway/workflows/{run_id}/signal", json={"name": "approve"}, headers=as_user("ana")
        )
    assert done["status"] == "completed" and done["result"]["result"]["id"] == "b-1"
    assert stack.fake.bodies("/steps/b") == [{"by": "ops"}]
    assert again.status_code == 409 and again.json()["error"]["code"] == "WORKFLOW_CLOSED"


async def test_workflows_cancel_compensates_completed_steps(stack):
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        run_id = (await start(http, "Approval", as_user("ana"))).json()["data"]["workflowId"]
        await wait_for(http, run_id, as_user("ana"), lambda d: d["step"] == "approval")
        cancelled = await http.post(f"/api/gateway/workflows/{run_id}/cancel", headers=as_user("ana"))
        assert cancelled.status_code == 202 and cancelled.json()["data"]["status"] == "cancelling"
        done = await wait_for(http, run_id, as_user("ana"))
    assert done["status"] == "canceled"
    assert done["result"]["error"]["code"] == "CANCELLED" and done["result"]["error"]["step"] == "approval"
    assert done["result"]["compensation"] == {"compensated": ["a"], "failed": []}
    assert stack.fake.paths() == ["/steps/a", "/steps/a/a-1/undo"]


async def test_workflows_run_timeout_compensates(stack):
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        run_id = (await start(http, "Deadline", as_user("ana"))).json()["data"]["workflowId"]
        done = await wait_for(http, run_id, as_user("ana"))
    assert done["status"] == "failed"
    assert done["result"]["error"]["code"] == "WORKFLOW_TIMEOUT" and done["result"]["error"]["step"] == "approval"
    assert done["result"]["compensation"]["compensated"] == ["a"]


async def test_workflows_cancel_mid_call_lets_the_call_finish_and_undoes_it(stack):
    gate = threading.Event()
    stack.fake.hold["/steps/b"] = gate
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        run_id = (await start(http, "Trio", as_user("ana"), input={"data": {"n": 1}})).json()["data"]["workflowId"]
        await wait_until(lambda: "/steps/b" in stack.fake.paths())
        assert (await http.post(f"/api/gateway/workflows/{run_id}/cancel", headers=as_user("ana"))).status_code == 202
        gate.set()  # the hold (say, a payment) goes through after the cancel: it must be undone too
        done = await wait_for(http, run_id, as_user("ana"))
    assert done["status"] == "canceled" and done["result"]["error"]["step"] == "b"
    assert done["result"]["compensation"]["compensated"] == ["b", "a"]
    assert stack.fake.paths() == ["/steps/a", "/steps/b", "/steps/b/b-1/undo", "/steps/a/a-1/undo"]


async def test_workflows_in_process_calls_act_as_the_gateway(stack):
    """``invoke`` (webhook actions, workflow steps) skips the auth plugin: it acts as a service."""
    config = load_config(stack.root, stack.env)
    try:
        started = await invoke(config, "workflows.start", body={"workflow": "Approval", "input": {"userId": "cy"}})
        run_id = started.body["data"]["workflowId"]
        seen = await invoke(config, "workflows.get", params={"id": run_id})
        cancelled = await invoke(config, "workflows.cancel", params={"id": run_id})
    finally:
        await config.shutdown()
    assert started.status == 201 and seen.status == 200 and cancelled.status == 202
    async with httpx.AsyncClient(base_url=stack.url) as http:  # owned by the user it was started for
        assert (await http.get(f"/api/gateway/workflows/{run_id}", headers=as_user("cy"))).status_code == 200
        spoof = await http.get(
            f"/api/gateway/workflows/{run_id}", headers={**as_user("zed"), "x-auth-method": "internal"}
        )
        assert spoof.status_code == 404


async def test_workflows_list_and_ownership(stack):
    ana, bob = f"ana-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"  # the server is shared by the module
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        mine = (await start(http, "Trio", as_user(ana), input={"data": {"n": 2}})).json()["data"]["workflowId"]
        waiting = (await start(http, "Approval", as_user(ana))).json()["data"]["workflowId"]
        theirs = (await start(http, "Approval", as_user(bob))).json()["data"]["workflowId"]
        await wait_for(http, mine, as_user(ana))

        listed = (await http.get("/api/gateway/workflows/list", headers=as_user(ana))).json()["data"]
        assert {w["workflowId"] for w in listed["workflows"]} == {mine, waiting}
        running = (
            await http.get(
                "/api/gateway/workflows/list",
                params={"workflow": "Approval", "status": "running"},
                headers=as_user(ana),
            )
        ).json()["data"]["workflows"]
        assert [w["workflowId"] for w in running] == [waiting] and running[0]["status"] == "running"
        every = (await http.get("/api/gateway/workflows/list", params={"limit": 100}, headers=ADMIN)).json()["data"]
        assert {mine, waiting, theirs} <= {w["workflowId"] for w in every["workflows"]}
        page = (await http.get("/api/gateway/workflows/list", params={"limit": 1}, headers=as_user(ana))).json()["data"]
        assert len(page["workflows"]) == 1 and page["nextPageToken"]

        # bob cannot read, signal or cancel ana's run: to him it does not exist
        for method, path in [("GET", ""), ("POST", "/signal"), ("POST", "/cancel")]:
            reply = await http.request(
                method,
                f"/api/gateway/workflows/{waiting}{path}",
                headers=as_user(bob),
                json={"name": "approve"} if path == "/signal" else None,
            )
            assert reply.status_code == 404 and reply.json()["error"]["code"] == "WORKFLOW_NOT_FOUND", (
                path,
                reply.text,
            )
        assert (await http.get(f"/api/gateway/workflows/{waiting}", headers=ADMIN)).status_code == 200
        plain = await http.get("/api/gateway/workflows/list", headers={"x-api-key": PLAIN_KEY})
        assert plain.status_code == 403
        spoofed = await start(http, "Approval", as_user(bob), input={"userId": ana})
        assert spoofed.status_code == 403
        for run_id, user in [(waiting, ana), (theirs, bob)]:
            await http.post(f"/api/gateway/workflows/{run_id}/cancel", headers=as_user(user))


async def test_workflows_start_with_an_id_is_idempotent(stack):
    async with httpx.AsyncClient(base_url=stack.url) as http:  # no worker needed: the runs just wait
        run_id = f"order-{uuid.uuid4().hex[:8]}"
        first = await start(http, "Trio", as_user("ana"), id=run_id, input={"data": {"n": 3}})
        again = await start(http, "Trio", as_user("ana"), id=run_id, input={"data": {"n": 3}})
        other_input = await start(http, "Trio", as_user("ana"), id=run_id, input={"data": {"n": 4}})
        other_user = await start(http, "Trio", as_user("bob"), id=run_id, input={"data": {"n": 3}})
        invalid = await start(http, "Trio", as_user("ana"), input={"data": {"n": "three"}})
        unknown = await start(http, "Nope", as_user("ana"))
        await http.post(f"/api/gateway/workflows/{run_id}/cancel", headers=as_user("ana"))
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["data"]["existing"] is True and again.json()["data"]["runId"] == first.json()["data"]["runId"]
    assert other_input.status_code == 409 and other_user.status_code == 409
    assert invalid.status_code == 400 and invalid.json()["error"]["details"][0]["path"] == "$.input.data.n"
    assert unknown.status_code == 400 and "Trio" in unknown.json()["error"]["details"]["workflows"]


async def test_workflows_definition_is_pinned_at_start(stack):
    async with running_worker(stack), httpx.AsyncClient(base_url=stack.url) as http:
        old = (await start(http, "Approval", as_user("ana"))).json()["data"]
        await wait_for(http, old["workflowId"], as_user("ana"), lambda d: d["step"] == "approval")
        # the YAML changes while the run waits; a gateway on the new config starts runs of the new definition
        saga = stack.root / "workflows.d" / "approval.yaml"
        saga.write_text(saga.read_text().replace("body: {by:", "body: {approver:"))
        with serve(create_app(str(stack.root), stack.env)) as new_url:
            async with httpx.AsyncClient(base_url=new_url) as new_http:
                new = (await start(new_http, "Approval", as_user("ana"))).json()["data"]
                await new_http.post(
                    f"/api/gateway/workflows/{old['workflowId']}/signal",
                    json={"name": "approve", "args": [{"by": "ops"}]},
                    headers=as_user("ana"),
                )
                done = await wait_for(new_http, old["workflowId"], as_user("ana"))
                await new_http.post(f"/api/gateway/workflows/{new['workflowId']}/cancel", headers=as_user("ana"))
    assert new["definitionHash"] != old["definitionHash"] == done["definitionHash"]
    assert done["status"] == "completed" and stack.fake.bodies("/steps/b") == [{"by": "ops"}]  # the old step b


async def test_workflows_worker_restart_resumes_mid_workflow(stack):
    gate = threading.Event()
    stack.fake.hold["/steps/slow"] = gate
    async with httpx.AsyncClient(base_url=stack.url) as http:
        async with running_worker(stack):
            run_id = (await start(http, "Slow", as_user("ana"))).json()["data"]["workflowId"]
            await wait_until(lambda: "/steps/slow" in stack.fake.paths())
        # the first worker is gone mid-step; the step's backend answers from now on
        gate.set()
        async with running_worker(stack):
            done = await wait_for(http, run_id, as_user("ana"), timeout=30)
    assert done["status"] == "completed" and done["result"]["result"] == "slow-1"
    assert stack.fake.paths().count("/steps/a") == 1  # resumed from history, not started over
    assert stack.fake.paths().count("/steps/slow") >= 2


async def test_workflows_worker_command_runs_until_sigterm(stack):
    """``gateway-engine worker`` as a process: it serves the config's task queues and stops cleanly."""
    env = {**os.environ, **stack.env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway_engine", "worker", "--config", str(stack.root)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=stack.url) as http:
            run_id = (await start(http, "Trio", as_user("ana"), input={"data": {"n": 5}})).json()["data"]["workflowId"]
            done = await wait_for(http, run_id, as_user("ana"), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert done["status"] == "completed" and done["result"]["result"]["a"] == "a-1"
    assert proc.returncode == 0, err.decode()
    assert b"task queues" in err and stack.queue.encode() in err


def test_workflows_worker_command_refuses_a_broken_config(tmp_path):
    root = write_config(tmp_path, gateway_yaml(), {})
    (root / "workflows.d").mkdir()
    (root / "workflows.d" / "w.yaml").write_text("workflow: W\nsteps:\n  - {name: a, call: shop.step}\n")
    err = io.StringIO()
    assert run(["worker", "--config", str(root)], stderr=err) == 1
    assert "workflows.d/w.yaml:3:" in err.getvalue()


def test_workflows_health_and_reconnect(tmp_path):
    port = free_port()
    root = write_config(tmp_path, gateway_yaml(), {"workflows": (ROOT / "routes.d" / "workflows.yaml").read_text()})
    with serve(create_app(str(root), {"JWT_SECRET": JWT_SECRET, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}"})) as url:
        down = httpx.get(f"{url}/api/gateway/workflows/list", headers=ADMIN)
        assert down.status_code == 502 and down.json()["error"]["code"] == "UPSTREAM_UNAVAILABLE"
        with temporal_server(port):  # the failed connect was not kept: the next call connects
            up = httpx.get(f"{url}/api/gateway/workflows/list", headers=ADMIN)
            health = httpx.get(f"{url}/api/gateway/health/backends")
    assert up.status_code == 200 and up.json()["data"] == {"workflows": [], "nextPageToken": None}
    assert health.json()["systems"]["workflows"]["status"] == "up"


@pytest.mark.parametrize(
    "saga, message",
    [
        ("workflow: W\nsteps:\n  - {name: a, call: shop.stepp}\n", "no route 'shop.stepp'"),
        (
            "workflow: W\nsteps:\n  - {name: a, call: shop.undo, with: {params: {kind: a}}}\n",
            "needs path parameter(s) id",
        ),
        (
            "workflow: W\nsteps:\n  - {name: a, call: shop.step, with: {params: {kind: '{{ steps.b.result }}'}}}\n"
            "  - {name: b, call: shop.step, with: {params: {kind: b}}}\n",
            "reads steps.b, which is not an earlier step",
        ),
        ("workflow: W\nsteps:\n  - {name: a, switch: {value: x, cases: {x: Missing}}}\n", "unknown workflow 'Missing'"),
        ("workflow: W\nsteps:\n  - {name: a, switch: {value: x, cases: {x: W}}}\n", "cycle: W -> W"),
        (
            "workflow: W\nsteps:\n  - {name: a, call: shop.step, with: {params: {kind: '{{ env.X }}'}}}\n",
            "unknown name(s) env",
        ),
        ("workflow: W\nsteps:\n  - {name: a, call: shop.step, bogus: 1}\n", "unknown key 'bogus'"),
    ],
)
def test_workflows_validate_reports_located_errors(tmp_path, saga, message):
    root = write_config(tmp_path, gateway_yaml(), {"shop": SHOP.format(url="http://127.0.0.1:9")})
    (root / "workflows.d").mkdir()
    (root / "workflows.d" / "w.yaml").write_text(saga)
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    assert "workflows.d/w.yaml:" in out.getvalue() and message in out.getvalue(), out.getvalue()


def test_workflows_validate_requires_forwarded_identity(tmp_path):
    shipped = (ROOT / "routes.d" / "workflows.yaml").read_text()
    without = shipped.replace("enabled: true", "enabled: false")
    root = write_config(tmp_path, gateway_yaml(), {"workflows": without})
    out = io.StringIO()
    assert run(["validate", "--config", str(root)], stdout=out) == 1
    assert "routes.d/workflows.yaml:" in out.getvalue() and "forward_identity enabled" in out.getvalue()
