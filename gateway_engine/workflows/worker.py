"""The workflows feature's worker (``gateway-engine worker``): runs the saga workflow and the route
activity for every task queue the config's workflows name, until stopped.

The worker loads the same config directory as ``serve`` (its routes are what the steps call) and
connects where the workflows backend points (``routes.d``), or to ``TEMPORAL_ADDRESS`` without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from gateway_engine.compiled.model import CompiledConfig

from .activities import RouteActivities
from .client import Connection, connect
from .definitions import CATALOG
from .interpreter import SagaWorkflow

log = logging.getLogger("gateway_engine.workflows")

# The interpreter keeps no module state and renders templates with the engine's pure sandboxed
# Jinja; the engine (and Jinja, which takes locks while compiling) are passed through rather than
# re-imported for every run.
_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("gateway_engine", "jinja2", "markupsafe")
)


def build_worker(client: Client, config: CompiledConfig, task_queue: str, **options) -> Worker:
    """A worker for one task queue; ``options`` go to temporalio's ``Worker``."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[SagaWorkflow],
        activities=RouteActivities(config).all(),
        workflow_runner=_RUNNER,
        **options,
    )


def connection_for(config: CompiledConfig) -> Connection:
    """The workflows backend's Temporal (``temporal://`` upstream and its bearer key), else the env."""
    for upstream in config.upstreams:
        if upstream.url.startswith("temporal://"):
            headers: list[tuple[str, str]] = []
            upstream.auth.apply("GET", upstream.url, headers, None)
            scheme, _, token = dict(headers).get("authorization", "").partition(" ")
            return Connection.from_url(upstream.url, token.strip() if scheme.lower() == "bearer" else None)
    return Connection.from_env(config.env)


async def run(config: CompiledConfig, stop: asyncio.Event, task_queues: list[str] | None = None) -> None:
    """Serve until ``stop`` is set; in-flight activities get a short grace period."""
    catalog = config.state(CATALOG)
    queues = task_queues or (catalog.task_queues() if catalog is not None else [])
    if not queues:
        raise ValueError("no workflows in workflows.d, so no task queue to serve")
    conn = connection_for(config)
    client = await connect(conn)
    log.info("worker on %s namespace %s, task queues %s", conn.address, conn.namespace, ", ".join(queues))
    async with contextlib.AsyncExitStack() as stack:  # the config is started: the steps' routes run its plugins
        for queue in queues:
            await stack.enter_async_context(
                build_worker(client, config, queue, graceful_shutdown_timeout=timedelta(seconds=10))
            )
        await stop.wait()
