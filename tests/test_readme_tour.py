"""The README's five-minute tour, run literally: its YAML written where it says, its shell blocks run by bash in a
copy of the shipped config, against a small orders API this test starts. Only the port is the test's own (a free
one instead of 8080), and the test waits for the server the tour starts in the background."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.servers import free_port, serve

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def _tour() -> str:
    text = README.read_text()
    start = text.index("## A five-minute tour")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def _expected_pattern(line: str) -> re.Pattern[str]:
    """A documented answer (``# {...}``) as a pattern: ``{...}``, ``[...]``, ``"..."`` and ``...`` stand for any
    object, list, string and scalar."""
    pattern = re.escape(line)
    for placeholder, anything in (
        (r"\{\.\.\.\}", r"\{.*\}"),
        (r"\[\.\.\.\]", r"\[.*\]"),
        (r'"\.\.\."', r'"[^"]*"'),
        (r"\.\.\.", r"[^,\]}]+"),
    ):
        pattern = pattern.replace(placeholder, anything)
    return re.compile(pattern)


def _orders_api(seen: list[dict]) -> Starlette:
    async def orders(request: Request) -> JSONResponse:
        seen.append({"path": request.url.path, "query": str(request.url.query), **dict(request.headers)})
        return JSONResponse({"items": [{"id": 42, "status": "open"}], "total": 1})

    async def order(request: Request) -> JSONResponse:
        seen.append({"path": request.url.path, **dict(request.headers)})
        return JSONResponse({"id": int(request.path_params["id"]), "status": "open"})

    return Starlette(routes=[Route("/v1/orders", orders), Route("/v1/orders/{id}", order)])


def _copy_shipped_config(target: Path) -> None:
    shutil.copy(REPO / "gateway.yaml", target / "gateway.yaml")
    for folder in REPO.iterdir():
        if folder.is_dir() and folder.name.endswith(".d"):
            shutil.copytree(folder, target / folder.name)
    shutil.copytree(REPO / "schemas", target / "schemas", ignore=shutil.ignore_patterns("*.py", "__pycache__"))


def _script(block: str, port: int) -> str:
    """The block as written, with the test's port, an echo after each curl (curl prints no final newline) and a
    bounded wait after starting the server."""
    lines = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for line in block.replace("8080", str(port)).splitlines():
        lines.append(line)
        command = line.split("#", 1)[0].strip()
        if command.startswith("curl "):
            lines.append("echo")
        elif "gateway-engine serve" in command:
            lines.append(
                f"for _ in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:{port}/api/gateway/health && break; "
                "sleep 0.1; done"
            )
    return "\n".join(lines) + "\n"


def test_readme_tour_runs_as_written(tmp_path: Path) -> None:
    section = _tour()
    target = re.search(r"writing one file, `([^`]+)`", section)
    assert target is not None, "the tour names the file it writes"
    (yaml_block,) = _blocks(section, "yaml")
    shell_blocks = _blocks(section, "sh")
    assert len(shell_blocks) == 2

    _copy_shipped_config(tmp_path)
    (tmp_path / target.group(1)).write_text(yaml_block)
    seen: list[dict] = []
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with serve(_orders_api(seen)) as orders_url:
        env["ORDERS_URL"] = orders_url
        outputs: list[str] = []
        for block in shell_blocks:
            done = subprocess.run(
                ["bash", "-c", _script(block, port)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            outputs.append(done.stdout)

    assert outputs[0].startswith("ok: "), outputs[0]  # validate
    assert "orders" in outputs[0] and "list-orders" in outputs[0]  # the route table lists the new routes
    documented = [line[2:] for line in shell_blocks[1].splitlines() if line.startswith("# {")]
    # the server's JSON access lines share stdout with curl: the envelopes are the answers
    answers = [line for line in outputs[1].splitlines() if line.startswith('{"success"')]
    assert len(answers) == len(documented) == 3
    for answer, expected in zip(answers, documented):
        assert _expected_pattern(expected).fullmatch(answer), (answer, expected)
    assert '"data":[{"id":42,"status":"open"}]' in answers[1] and '"pagination":{"total":1}' in answers[1]
    # the gateway's own credential went upstream; the client's key did not; the query allowlist applied
    assert [s["path"] for s in seen] == ["/v1/orders/42", "/v1/orders"]
    assert all(s["authorization"] == "Bearer s3cret" and "x-api-key" not in s for s in seen)
    assert seen[1]["query"] == "status=open"
