"""The Temporal connection: one lazily connected client per process side (gateway, worker).

Where to connect comes from the workflows backend in ``routes.d`` (``temporal://ADDRESS/NAMESPACE``
and ``auth: bearer`` holding ``TEMPORAL_API_KEY``), or from those env variables directly. With an
API key the connection uses TLS, as Temporal Cloud requires; without one it is plain (a local server).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError

from .records import OWNER_ATTRIBUTE

log = logging.getLogger("gateway_engine.workflows")


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Temporal. The API key never appears in ``repr``."""

    address: str
    namespace: str = "default"
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, api_key: str | None = None) -> "Connection":
        """``temporal://host:port/namespace`` (namespace optional, default ``default``)."""
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        return cls(parts.netloc, unquote(segments[0]) if segments else "default", api_key or None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Connection":
        return cls(
            environ.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233",
            environ.get("TEMPORAL_NAMESPACE") or "default",
            environ.get("TEMPORAL_API_KEY") or None,
        )


async def connect(conn: Connection) -> Client:
    """Connect (TLS + API key when a key is set) and make sure the owner search attribute exists."""
    client = await Client.connect(
        conn.address, namespace=conn.namespace, api_key=conn.api_key, tls=conn.api_key is not None
    )
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=conn.namespace,
                search_attributes={OWNER_ATTRIBUTE: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
            )
        )
    except RPCError as exc:  # already there, or not allowed to (Temporal Cloud: add it with tcld once)
        log.info(
            "search attribute %s not added (%s); it must exist in namespace %s",
            OWNER_ATTRIBUTE,
            exc.status.name,
            conn.namespace,
        )
    return client


class SharedClient:
    """One client, connected on first use. A failed connect is not remembered, so the next call
    tries again; a dropped connection is re-established by the SDK's channel on the next call."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._conn: Connection | None = None
        self._lock: asyncio.Lock | None = None

    async def get(self, conn: Connection) -> Client:
        if self._client is not None and self._conn == conn:
            return self._client
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._client is None or self._conn != conn:  # first use, or new settings after a reload
                self._client = await connect(conn)
                self._conn = conn
            return self._client

    def close(self) -> None:
        self._client = None  # the SDK closes the channel when the client is released
        self._conn = None
