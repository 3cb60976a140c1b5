"""The workflows feature: ``workflows.d`` sagas on Temporal, the ``temporal`` transport and its Temporal worker."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from typing import Any

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.model import Contribution
from gateway_engine.compiled.workers import Worker
from gateway_engine.upstreams.seam import Transport
from gateway_engine.workflows.definitions import compile_workflows


def temporal_transport(**options: Any) -> Transport:
    from gateway_engine.workflows.transport import TemporalTransport  # temporalio loads only for configs that use it

    return TemporalTransport(**options)


temporal_transport.schemes = ("temporal://",)  # type: ignore[attr-defined]


class WorkflowsFeature(Feature):
    name = "workflows"
    order = 50  # before webhooks, whose start actions name workflows
    folder = "workflows.d"
    schema = "workflows"
    transports = {"temporal": temporal_transport}

    def compile(self, given: FeatureInput) -> Contribution:
        catalog = compile_workflows(given.documents, list(given.core.routes), given.errors)
        workers = {"workflows": Worker(_run_worker)} if catalog.task_queues() else {}
        return Contribution(state=catalog, workers=workers)

    def add_worker_options(self, worker: argparse.ArgumentParser) -> None:
        worker.add_argument(
            "--task-queue",
            action="append",
            help="workflows: serve only this task queue (repeatable; default: every queue the workflows name)",
        )


async def _run_worker(config: Any, options: Mapping[str, Any], stop: asyncio.Event) -> None:
    from gateway_engine.workflows.worker import run  # temporalio loads only for the worker

    await run(config, stop, options.get("task_queue"))
