"""The upstream credential seam: what every upstream auth style adds to a request.

Fixed headers or query parameters, computed once at load; a per-request signer
(``aws_sigv4`` in ``sigv4.py``) overrides ``apply``.
"""

from __future__ import annotations

from typing import Any


class UpstreamAuth:
    """Adds credentials to an upstream request. ``describe`` is safe to print; ``secrets`` never is
    (the strings to mask wherever upstream bytes reach a client)."""

    def __init__(
        self,
        headers: list[tuple[str, str]] | None = None,
        query: str = "",
        description: str = "none",
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.headers = headers or []
        self.query = query  # already encoded `name=value`, appended to the query string
        self.description = description
        self.secrets = secrets
        self.header_names = {name.lower() for name, _ in self.headers}

    def apply(self, method: str, url: str, headers: list[tuple[str, str]], body: Any) -> str:
        """Add credentials in place; returns the (possibly extended) URL."""
        if self.headers:  # the gateway's credentials replace any client header of the same name
            headers[:] = [(k, v) for k, v in headers if k not in self.header_names]
            headers.extend(self.headers)
        if self.query:
            url += ("&" if "?" in url else "?") + self.query
        return url

    def presign(self, method: str, url: str, expires: int) -> str:
        raise ValueError(f"upstream auth {self.description!r} cannot presign URLs; use style aws_sigv4")
