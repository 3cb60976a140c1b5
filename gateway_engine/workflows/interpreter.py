"""The one Temporal workflow: it interprets a pinned saga definition, deterministically.

Registered as Temporal's dynamic workflow, so the workflow type is the saga's name
(``OrderFulfillment``) and visibility filters by it. The start argument carries the
definitions (the saga and the children it may start) and their hash; templates run
here with the engine's sandboxed Jinja renderer, which is pure. Every side effect is
an activity (``activities.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    import orjson

    from gateway_engine.config.durations import parse_duration
    from gateway_engine.config.templates import TemplateRuntimeError, compile_value

    from .definitions import DEFAULT_TASK_QUEUE, TEMPLATE_NAMES
    from .records import failure_of, memo_for, owner_attributes

CALL_ROUTE = "gateway.call_route"
DELIVER_EVENT = "gateway.deliver_event"
NON_RETRYABLE = ["RouteRejected", "RouteMissing", "EventRejected"]


class StepFailed(Exception):
    """A step (or a compensation) that failed for good; ``error`` is what the output reports."""

    def __init__(self, step: str | None, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.error = {"step": step, "code": code, "message": message, **({"details": details} if details else {})}


@workflow.defn(dynamic=True)
class SagaWorkflow:
    def __init__(self) -> None:
        self.start: dict[str, Any] = {}  # the start argument: definitions, hash, input, owner
        self.signals: dict[str, Any] = {}
        self.step: str | None = None
        self.done: list[dict[str, Any]] = []  # completed steps that have a compensation, in order
        self.child: Any = None
        self.compiled: dict[
            Any, Any
        ] = {}  # template value → compiled renderer: each compiles once per run, not per use

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> Any:
        self.start = workflow.payload_converter().from_payload(args[0].payload, dict)
        info = workflow.info()
        spec = self.start["definitions"][info.workflow_type]
        self.signals.update(self.start.get("signals", {}))
        workflow.set_dynamic_signal_handler(self._on_signal)
        workflow.set_query_handler("state", lambda: {"step": self.step, "signals": sorted(self.signals)})
        scope = {
            "input": self.start["input"],
            "steps": {},
            "signals": self.signals,
            "workflow": {
                "id": info.workflow_id,
                "runId": info.run_id,
                "type": info.workflow_type,
                "definitionHash": self.start["hash"],
            },
        }
        try:
            try:
                async with asyncio.timeout(parse_duration(spec["timeout"]) if "timeout" in spec else None):
                    for step in spec["steps"]:
                        await self._run_step(step, scope)
            except TimeoutError:  # the run's own deadline: unlike Temporal's execution timeout, it compensates
                raise StepFailed(
                    self.step, "WORKFLOW_TIMEOUT", f"the workflow did not finish within {spec['timeout']}"
                ) from None
            self._at("result")
            output = {
                "success": True,
                "result": self._render("result", spec.get("result"), scope),
                "artifacts": self._artifacts(spec.get("artifacts", []), scope),
            }
        except asyncio.CancelledError:
            error = {"step": self.step, "code": "CANCELLED", "message": "The workflow was cancelled."}
            self._finish(await self._failed(error, scope))
            raise
        except StepFailed as exc:
            output = await self._failed(exc.error, scope)
            self._finish(output)
            raise ApplicationError(
                f"step {exc.error['step']} failed: {exc.error['message']}",
                output,
                type="StepFailed",
                non_retryable=True,
            ) from None
        self._finish(None)
        return output

    async def _run_step(self, step: dict[str, Any], scope: dict[str, Any]) -> None:
        name = step["name"]
        self._at(name)
        if "when" in step and not self._render(name, step["when"], scope):
            scope["steps"][name] = {"skipped": True, "result": None, "error": None}
            return
        try:
            if "call" in step:
                result = await self._call(step, step, scope, name)
            elif "switch" in step:
                result = await self._switch(step, scope)
            elif "wait" in step:
                result = await self._wait(step)
            else:
                result = None  # a step that only emits or publishes
        except StepFailed as exc:
            if not step.get("optional"):
                raise
            scope["steps"][name] = {"skipped": False, "result": None, "error": exc.error}
            return
        scope["steps"][name] = {"skipped": False, "result": result, "error": None}
        if "compensate" in step:
            self.done.append(step)
        for kind in ("emit", "publish"):  # after the call: undone with it when the delivery fails for good
            if kind in step:
                await self._deliver(step, kind, scope)

    async def _deliver(self, step: dict[str, Any], kind: str, scope: dict[str, Any]) -> None:
        """The step's event (``emit``) or channel message (``publish``), delivered durably by an activity."""
        retry = step.get("retry", {})
        request = {kind: self._render(step["name"], step[kind], scope), "owner": self.start.get("owner")}
        try:
            await workflow.execute_activity(
                DELIVER_EVENT,
                request,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=_seconds(retry.get("backoff", "1s")),
                    backoff_coefficient=2.0,
                    maximum_interval=_seconds(retry.get("max_backoff", "30s")),
                    maximum_attempts=retry.get("attempts", 5),
                    non_retryable_error_types=NON_RETRYABLE,
                ),
            )
        except ActivityError as exc:
            raise StepFailed(step["name"], *failure_of(exc)) from None

    async def _call(self, step: dict[str, Any], call: dict[str, Any], scope: dict[str, Any], key: str) -> Any:
        info = workflow.info()
        request = {
            "route": call["call"],
            **self._render(step["name"], call.get("with", {}), scope),
            "owner": self.start.get("owner"),
            "idempotencyKey": f"{info.workflow_id}/{info.run_id}/{key}",
        }
        retry = call.get("retry", {})
        task = asyncio.ensure_future(
            workflow.execute_activity(
                CALL_ROUTE,
                request,
                start_to_close_timeout=_seconds(call.get("timeout", "30s")),
                retry_policy=RetryPolicy(
                    initial_interval=_seconds(retry.get("backoff", "1s")),
                    backoff_coefficient=2.0,
                    maximum_interval=_seconds(retry.get("max_backoff", "30s")),
                    maximum_attempts=retry.get("attempts", 5 if call is not step else 3),
                    non_retryable_error_types=NON_RETRYABLE,
                ),
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if call is step:  # cancelled mid-call: let the call finish, so a call that went through is undone too
                try:
                    scope["steps"][step["name"]] = {"skipped": False, "result": await task, "error": None}
                    if "compensate" in step:
                        self.done.append(step)
                except ActivityError:
                    pass
            raise
        except ActivityError as exc:
            raise StepFailed(step["name"], *failure_of(exc)) from None

    async def _switch(self, step: dict[str, Any], scope: dict[str, Any]) -> Any:
        switch, name = step["switch"], step["name"]
        value = self._render(name, switch["value"], scope)
        child = switch["cases"].get(str(value), switch.get("default"))
        if child is None:
            raise StepFailed(
                name, "NO_MATCHING_WORKFLOW", f"no workflow for {value!r}; known: {', '.join(sorted(switch['cases']))}"
            )
        owner = self.start.get("owner")
        start = {
            **self.start,
            "input": self._render(name, switch["input"], scope) if "input" in switch else scope["input"],
            "signals": dict(self.signals),
        }
        spec = self.start["definitions"][child]
        info = workflow.info()
        try:
            self.child = await workflow.start_child_workflow(
                child,
                start,
                id=f"{info.workflow_id}.{name}",
                task_queue=spec.get("task_queue", DEFAULT_TASK_QUEUE),
                memo=memo_for(owner, child, self.start["hash"], None),
                search_attributes=owner_attributes(owner),
            )
            workflow.upsert_memo({"child": self.child.id})
            # past the step's timeout the child is cancelled, and so compensates itself
            async with asyncio.timeout(parse_duration(step["timeout"]) if "timeout" in step else None):
                return await self.child
        except TimeoutError:
            raise StepFailed(
                name, "STEP_TIMEOUT", f"workflow {child} did not finish within {step['timeout']}"
            ) from None
        except ChildWorkflowError as exc:
            if isinstance(exc.cause, CancelledError) and _this_task().cancelling():
                raise asyncio.CancelledError() from None  # this run was cancelled, and the child with it
            details = _details(exc.cause)
            raise StepFailed(name, "CHILD_WORKFLOW_FAILED", f"workflow {child} failed", details) from None
        finally:
            self.child = None

    async def _wait(self, step: dict[str, Any]) -> Any:
        signal = step["wait"]["signal"]
        timeout = step["wait"].get("timeout", "1h")
        try:
            await workflow.wait_condition(lambda: signal in self.signals, timeout=_seconds(timeout))
        except TimeoutError:
            raise StepFailed(step["name"], "SIGNAL_TIMEOUT", f"no {signal!r} signal within {timeout}") from None
        return self.signals[signal]

    async def _on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        values = [workflow.payload_converter().from_payload(a.payload) for a in args]
        self.signals[name] = values[0] if len(values) == 1 else values
        if self.child is not None:  # the running child may be the one waiting for it
            try:
                await self.child.signal(name, *values)
            except FailureError:
                pass  # the child closed meanwhile: nothing waits for the signal any more

    async def _failed(self, error: dict[str, Any], scope: dict[str, Any]) -> dict[str, Any]:
        """Undo the completed steps, newest first; each compensation is retried on its own."""
        compensated, failed = [], []
        for step in reversed(self.done):
            self._at(f"compensate:{step['name']}")
            try:
                await self._call(step, step["compensate"], scope, step["name"] + "/compensate")
                compensated.append(step["name"])
            except StepFailed as exc:
                failed.append({"step": step["name"], "code": exc.error["code"], "message": exc.error["message"]})
        return {
            "success": False,
            "result": None,
            "artifacts": [],
            "error": error,
            "compensation": {"compensated": compensated, "failed": failed},
        }

    def _render(self, step: str, value: Any, scope: dict[str, Any]) -> Any:
        key = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        render = self.compiled.get(key)
        if render is None:
            render = self.compiled[key] = compile_value(value, TEMPLATE_NAMES)
        try:
            return render(scope)
        except TemplateRuntimeError as exc:
            raise StepFailed(step, "MAPPING_ERROR", str(exc)) from None

    def _artifacts(self, value: Any, scope: dict[str, Any]) -> list[Any]:
        if isinstance(value, str):
            rendered = self._render("artifacts", value, scope)
            return list(rendered) if isinstance(rendered, list) else []
        return [
            {"type": a["type"], "data": self._render("artifacts", a["data"], scope)}
            for a in value
            if "when" not in a or self._render("artifacts", a["when"], scope)
        ]

    def _at(self, step: str | None) -> None:
        self.step = step
        workflow.upsert_memo({"step": step})

    def _finish(self, outcome: dict[str, Any] | None) -> None:
        self.step = None
        workflow.upsert_memo({"step": None, "outcome": outcome})


def _seconds(value: Any) -> timedelta:
    return timedelta(seconds=parse_duration(value))


def _details(error: BaseException | None) -> Any:
    if isinstance(error, ApplicationError) and error.details:
        return error.details[0]
    return {"message": str(error)} if isinstance(error, FailureError) else None


def _this_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None  # called from the workflow's coroutines, which always run in a task
    return task
