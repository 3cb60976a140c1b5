"""Durable multi-backend workflows (sagas) on Temporal, declared in ``workflows.d/*.yaml``.

Only ``definitions`` is imported by the engine at load time; the Temporal parts (client,
transport, interpreter, activities, worker) import ``temporalio`` and load only when used.
"""
