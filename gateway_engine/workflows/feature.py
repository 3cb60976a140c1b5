"""The workflows feature: ``workflows.d`` sagas on Temporal, the ``temporal`` transport and the ``worker`` command."""

from __future__ import annotations

import argparse
import os
from typing import Any, TextIO

from gateway_engine.compiled.features import Feature, FeatureInput
from gateway_engine.compiled.model import Contribution
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
        return Contribution(state=compile_workflows(given.documents, list(given.core.routes), given.errors))

    def add_commands(self, commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
        worker = commands.add_parser("worker", help="run the Temporal worker of the workflows in workflows.d")
        worker.add_argument("--config", help="config directory, or its gateway.yaml (default: $GATEWAY_CONFIG, else .)")
        worker.add_argument(
            "--task-queue",
            action="append",
            help="serve only this task queue (repeatable; default: every queue the workflows name)",
        )
        worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from gateway_engine.compiled.compiler import load_config
    from gateway_engine.foundation.errors import ConfigErrors
    from gateway_engine.workflows.worker import main  # temporalio loads only for this command

    try:
        config = load_config(args.config or os.environ.get("GATEWAY_CONFIG") or ".")
    except ConfigErrors as exc:
        err.write(f"{exc}\n")
        return 1
    return main(config, args.task_queue, err)
