"""The two error types: what a client sees, and what a config author sees."""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """An error answered to the client as the error envelope.

    Plugins may return or raise one; the engine turns it into a response in one
    place (``_respond.error_reply``), so every client-facing error has the same shape.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.code!r}, {self.message!r})"


class ConfigError(Exception):
    """One problem in one config file, located as ``file:line:col: key.path: message``."""

    def __init__(self, message: str, *, file: str = "<config>", line: int = 0, col: int = 0, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.path = path

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path or '(root)'}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "path": self.path, "message": self.message}


class ConfigErrors(Exception):
    """Every problem found in a config directory; a load fails with all of them, not the first."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__(f"{len(errors)} config error(s)")
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)
