"""What the gateway keeps on a Temporal workflow: owner memo and search attribute, and how a
failed step is described. Shared by the transport, the interpreter and the activities."""

from __future__ import annotations

import hashlib
from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeout

#: keyword search attribute holding a hash of the owner's user id, so a user's list is one indexed query
OWNER_ATTRIBUTE = "GatewayOwner"
OWNER_KEY = SearchAttributeKey.for_keyword(OWNER_ATTRIBUTE)


def owner_tag(owner: str) -> str:
    """The owner as indexed: a hash (no quoting in list queries, no user ids in visibility)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:32]


def owner_attributes(owner: str | None) -> TypedSearchAttributes:
    return (
        TypedSearchAttributes([SearchAttributePair(OWNER_KEY, owner_tag(owner))])
        if owner
        else TypedSearchAttributes.empty
    )


def memo_for(owner: str | None, workflow: str, definition_hash: str, input_hash: str | None) -> dict[str, Any]:
    """The ``gateway`` memo: who owns the run (the ownership check reads it) and what it was pinned to."""
    return {
        "gateway": {"owner": owner, "workflow": workflow, "definitionHash": definition_hash, "inputHash": input_hash}
    }


def failure_of(exc: ActivityError) -> tuple[str, str, Any]:
    """``(code, message, details)`` of a failed route call, as the activity reported it."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
        details = cause.details[0]
        return (
            details.get("code") or "STEP_FAILED",
            details.get("message") or cause.message,
            {"status": details.get("status")},
        )
    if isinstance(cause, TemporalTimeout):
        return "STEP_TIMEOUT", "The call did not finish within the step's timeout.", None
    return "STEP_FAILED", str(cause or exc), None
