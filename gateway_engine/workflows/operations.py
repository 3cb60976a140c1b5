"""The workflow API against Temporal: start, list, describe, signal, cancel, each checking
ownership as ``access.py`` describes (another user's run answers 404, as if it did not exist)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from typing import Any

import orjson
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from gateway_engine.config.bodies import problems
from gateway_engine.foundation.errors import GatewayError

from .access import Caller
from .definitions import WorkflowCatalog
from .records import OWNER_ATTRIBUTE, memo_for, owner_attributes, owner_tag

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_RESERVED = frozenset({"start", "list"})  # GET /workflows/list is the listing, not a run
_SIGNAL = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_CLOSED = {"closed": "ExecutionStatus != 'Running'", "running": "ExecutionStatus = 'Running'", "all": ""}


def _start_request(catalog: WorkflowCatalog, caller: Caller, payload: Any) -> tuple[str, str | None, dict[str, Any]]:
    """``(workflow, id, input)`` of a start, checked; a user's own id is put in ``input.userId``."""
    if not isinstance(payload, dict) or not isinstance(payload.get("workflow"), str):
        raise GatewayError(400, "VALIDATION_ERROR", "Send {workflow, input: {action, userId, data}, id?}.")
    definition = catalog.get(payload["workflow"])
    if definition is None:
        raise GatewayError(
            400, "UNKNOWN_WORKFLOW", f"No workflow {payload['workflow']!r}.", details={"workflows": catalog.names()}
        )
    given_id = payload.get("id")
    if given_id is not None and not (isinstance(given_id, str) and _ID.match(given_id) and given_id not in _RESERVED):
        raise GatewayError(
            400, "VALIDATION_ERROR", "id must be 1-200 characters (letters, digits, . _ : -), not start or list."
        )
    data = payload.get("input", {})
    if not isinstance(data, dict):
        raise GatewayError(400, "VALIDATION_ERROR", "input must be an object {action, userId, data}.")
    if caller.user is not None:
        if data.get("userId") not in (None, caller.user):
            raise GatewayError(403, "FORBIDDEN", "input.userId must be your own user id.")
        data = {**data, "userId": caller.user}
    if definition.input_validator is not None:
        found = problems(definition.input_validator, data)  # bounded in number and size, as for route bodies
        if found:
            raise GatewayError(
                400,
                "VALIDATION_ERROR",
                f"The workflow input is invalid ({len(found)} problem(s)).",
                details=[{**p, "path": "$.input" + p["path"][1:]} for p in found],
            )
    return payload["workflow"], given_id, data


def _not_found(workflow_id: str) -> GatewayError:
    return GatewayError(404, "WORKFLOW_NOT_FOUND", f"No workflow {workflow_id!r}.")


async def start(client: Client, catalog: WorkflowCatalog, caller: Caller, payload: Any) -> tuple[int, dict[str, Any]]:
    name, given_id, data = _start_request(catalog, caller, payload)
    definition = catalog.get(name)
    assert definition is not None  # _start_request answered 400 for a workflow the catalog does not have
    owner = data.get("userId") if isinstance(data.get("userId"), str) else None
    bundle = catalog.bundle(name)
    input_hash = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    workflow_id = given_id or f"{name}-{uuid.uuid4().hex}"
    try:
        handle = await client.start_workflow(
            name,
            {**bundle, "input": data, "owner": owner},
            id=workflow_id,
            task_queue=definition.task_queue,
            memo=memo_for(owner, name, bundle["hash"], input_hash),
            search_attributes=owner_attributes(owner),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        # idempotent start: the same start again answers the existing run; anything else is a conflict
        existing = await _describe(client.get_workflow_handle(workflow_id), caller, conflict=True)
        meta = await existing.memo_value("gateway", {})
        if meta.get("owner") == owner and meta.get("workflow") == name and meta.get("inputHash") == input_hash:
            return 200, {
                "workflowId": workflow_id,
                "runId": existing.run_id,
                "workflow": name,
                "definitionHash": meta.get("definitionHash"),
                "existing": True,
            }
        raise GatewayError(409, "WORKFLOW_ID_CONFLICT", "A workflow with this id exists with another input.") from None
    return 201, {
        "workflowId": workflow_id,
        "runId": handle.result_run_id,
        "workflow": name,
        "definitionHash": bundle["hash"],
        "existing": False,
    }


async def list_runs(client: Client, catalog: WorkflowCatalog, caller: Caller, query: dict[str, str]) -> dict[str, Any]:
    name = query.get("workflow")
    if name is not None and catalog.get(name) is None:
        raise GatewayError(400, "UNKNOWN_WORKFLOW", f"No workflow {name!r}.", details={"workflows": catalog.names()})
    status = query.get("status", "all")
    if status not in _CLOSED:
        raise GatewayError(400, "VALIDATION_ERROR", "status must be running, closed or all.")
    limit = query.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise GatewayError(400, "VALIDATION_ERROR", "limit must be 1-100.")
    names = [name] if name else catalog.names()
    if not names:
        return {"workflows": [], "nextPageToken": None}
    clauses = ["WorkflowType IN (" + ", ".join(f"'{n}'" for n in names) + ")"]  # names match ^[A-Za-z][\w-]*$
    clauses += [_CLOSED[status]] if _CLOSED[status] else []
    clauses += [f"{OWNER_ATTRIBUTE} = '{owner_tag(caller.user)}'"] if caller.user is not None else []
    runs = client.list_workflows(
        " AND ".join(clauses), page_size=int(limit), next_page_token=_page_token(query.get("pageToken"))
    )
    await runs.fetch_next_page()
    token = runs.next_page_token
    return {
        "workflows": [_summary(r) for r in runs.current_page or []],
        "nextPageToken": base64.urlsafe_b64encode(token).decode() if token else None,
    }


async def describe(client: Client, caller: Caller, workflow_id: str) -> dict[str, Any]:
    handle = client.get_workflow_handle(workflow_id)
    desc = await _describe(handle, caller)
    meta = await desc.memo_value("gateway", {})
    out = {
        **_summary(desc),
        "step": await desc.memo_value("step", None),
        "child": await desc.memo_value("child", None),
        "definitionHash": meta.get("definitionHash"),
    }
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        out["result"] = await handle.result()
    elif desc.status != WorkflowExecutionStatus.RUNNING:
        out["result"] = await desc.memo_value("outcome", None)
    return out


async def signal(
    client: Client, catalog: WorkflowCatalog, caller: Caller, workflow_id: str, payload: Any
) -> dict[str, Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str) or not _SIGNAL.match(payload["name"]):
        raise GatewayError(400, "VALIDATION_ERROR", "Send {name, args?}; name: letters, digits, . _ -")
    args = payload.get("args", [])
    args = args if isinstance(args, list) else [args]
    handle = client.get_workflow_handle(workflow_id)
    desc = await _running(handle, caller)
    known = catalog.signals_of(desc.workflow_type) if catalog.get(desc.workflow_type) else frozenset()
    if payload["name"] not in known:
        raise GatewayError(
            400,
            "UNKNOWN_SIGNAL",
            f"Workflow {desc.workflow_type} waits for no {payload['name']!r} signal.",
            details={"signals": sorted(known)},
        )
    await handle.signal(payload["name"], *args)
    return {"workflowId": workflow_id, "signal": payload["name"]}


async def cancel(client: Client, caller: Caller, workflow_id: str) -> dict[str, Any]:
    handle = client.get_workflow_handle(workflow_id)
    await _running(handle, caller)
    await handle.cancel()
    return {"workflowId": workflow_id, "status": "cancelling"}


async def _describe(handle: WorkflowHandle, caller: Caller, *, conflict: bool = False) -> WorkflowExecutionDescription:
    """The run if the caller may see it; 404 otherwise (another user's run looks like no run)."""
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise _not_found(handle.id) from None
        raise
    meta = await desc.memo_value("gateway", None)
    if not isinstance(meta, dict) or not caller.owns(meta.get("owner")):
        if conflict:
            raise GatewayError(409, "WORKFLOW_ID_CONFLICT", "This workflow id is taken.")
        raise _not_found(handle.id)
    return desc


async def _running(handle: WorkflowHandle, caller: Caller) -> WorkflowExecutionDescription:
    desc = await _describe(handle, caller)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        assert desc.status is not None  # Temporal reports a status for every run it describes
        raise GatewayError(409, "WORKFLOW_CLOSED", f"Workflow {handle.id!r} is {desc.status.name.lower()}.")
    return desc


def _summary(run: WorkflowExecution) -> dict[str, Any]:
    return {
        "workflowId": run.id,
        "runId": run.run_id,
        "workflow": run.workflow_type,
        "status": run.status.name.lower() if run.status else None,
        "startedAt": _time(run.start_time),
        "closedAt": _time(run.close_time),
    }


def _time(value: Any) -> str | None:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def _page_token(value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        return base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError):
        raise GatewayError(400, "VALIDATION_ERROR", "pageToken is not a token this API returned.") from None
