"""routes.d/ai.yaml against a fake OpenAI API, including server-sent events streamed through the gateway."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from starlette.responses import StreamingResponse

from tests.contracts.fakes import FakeBackend, failed, json_answer, ok, route_names, start

KEY = "sk-proj-cityAI"


class StreamControl:
    """What the fake's event stream saw: released by the client, finished, or cancelled by a disconnect."""

    def __init__(self) -> None:
        self.first_read = threading.Event()  # set by the test once it has read the first event
        self.finished = threading.Event()
        self.cancelled = threading.Event()
        self.timed_out = False


def chunk(content=None, finish=None):
    delta = {"content": content} if content is not None else {}
    return (
        "data: "
        + json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )
        + "\n\n"
    ).encode()


def fake_openai(control: StreamControl) -> FakeBackend:
    fake = FakeBackend(
        lambda h: h.get("authorization") == f"Bearer {KEY}",
        json_answer(
            {
                "error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "param": None,
                }
            },
            401,
        ),
    )

    @fake.route("/v1/chat/completions", "POST")
    async def chat(request, rec):
        body = rec.json
        if body["messages"][-1]["content"] == "overload":
            return json_answer(
                {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}, 429
            )
        if not body.get("stream"):
            return json_answer(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                }
            )

        async def events():
            try:
                yield chunk("Hel")
                for _ in range(1000):  # at most ~10 s for the client to read the first event
                    if control.first_read.is_set():
                        break
                    if await request.is_disconnected():
                        control.cancelled.set()
                        return
                    await asyncio.sleep(0.01)
                else:
                    control.timed_out = True
                    return
                yield chunk("lo")
                yield chunk(finish="stop")
                yield b"data: [DONE]\n\n"
                control.finished.set()
            except (asyncio.CancelledError, GeneratorExit):
                control.cancelled.set()
                raise

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    @fake.route("/v1/embeddings", "POST")
    async def embeddings(request, rec):
        body = rec.json
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return json_answer(
            {
                "object": "list",
                "model": body["model"],
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2]} for i in range(len(inputs))],
                "usage": {"prompt_tokens": 3, "total_tokens": 3},
            }
        )

    return fake


@pytest.fixture
def openai(gateway):
    control = StreamControl()
    fake = fake_openai(control)
    with fake.serve() as url:
        yield fake, control, start(gateway, "ai", {"OPENAI_API_URL": url, "OPENAI_API_KEY": KEY})


MESSAGES = [{"role": "user", "content": "Where is the nearest park?"}]


def test_ai_chat_is_enveloped_with_a_default_token_cap(openai):
    fake, _, client = openai
    data = ok(
        client.post("/ai/chat", json={"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2}), "openai"
    )
    assert data["choices"][0]["message"]["content"] == "Hello"
    rec = fake.last
    assert rec["path"] == "/v1/chat/completions" and rec["headers"]["authorization"] == f"Bearer {KEY}"
    assert rec.json == {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2, "max_completion_tokens": 1024}
    ok(client.post("/ai/chat", json={"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 300}), "openai")
    assert "max_completion_tokens" not in fake.last.json and fake.last.json["max_tokens"] == 300


@pytest.mark.parametrize(
    "body, path",
    [
        ({"model": "gpt-4-32k", "messages": MESSAGES}, "$.model"),
        ({"model": "gpt-4o", "messages": MESSAGES, "max_completion_tokens": 100000}, "$.max_completion_tokens"),
        ({"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 5000}, "$.max_tokens"),
        ({"model": "gpt-4o", "messages": MESSAGES, "n": 8}, "$.n"),
        ({"model": "gpt-4o", "messages": []}, "$.messages"),
    ],
)
def test_ai_chat_model_allowlist_and_caps(openai, body, path):
    fake, _, client = openai
    error = failed(client.post("/ai/chat", json=body), "openai", 400, "VALIDATION_ERROR")
    assert [d["path"] for d in error["details"]] == [path]
    assert fake.requests == []


def test_ai_chat_upstream_error_is_enveloped(openai):
    _, _, client = openai
    error = failed(
        client.post("/ai/chat", json={"model": "gpt-4o", "messages": [{"role": "user", "content": "overload"}]}),
        "openai",
        429,
        "UPSTREAM_ERROR",
    )
    assert error["details"]["error"]["code"] == "rate_limit_exceeded"


def test_ai_chat_stream_delivers_the_first_event_before_the_upstream_finishes(openai):
    fake, control, client = openai
    events, finished_at_first_event = [], None
    with client.stream("POST", "/ai/chat", json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(line[len("data: ") :])
            if len(events) == 1:
                finished_at_first_event = control.finished.is_set()
                control.first_read.set()  # only now does the fake send the rest
    assert finished_at_first_event is False and control.timed_out is False
    assert events[-1] == "[DONE]" and len(events) == 4
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hello"
    assert "success" not in events[0]  # no envelope around the stream
    assert fake.last.json["stream"] is True


def test_ai_chat_stream_client_disconnect_cancels_the_upstream(openai):
    _, control, client = openai
    with client.stream("POST", "/ai/chat", json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}) as r:
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
        assert json.loads(first[len("data: ") :])["choices"][0]["delta"]["content"] == "Hel"
    # the client closed after one event and never released the fake: only the gateway closing its upstream
    # request can end the fake's stream
    assert control.cancelled.wait(10), "the upstream stream was not cancelled"
    assert not control.finished.is_set() and control.timed_out is False


def test_ai_embeddings(openai):
    fake, _, client = openai
    r = client.post("/ai/embeddings", json={"model": "text-embedding-3-small", "input": ["park", "museum"]})
    data = ok(r, "openai")
    assert [d["index"] for d in data] == [0, 1]
    assert r.json()["meta"]["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert fake.last["path"] == "/v1/embeddings"
    assert fake.last.json == {"model": "text-embedding-3-small", "input": ["park", "museum"]}
    failed(
        client.post("/ai/embeddings", json={"model": "text-embedding-ada-002", "input": "x"}),
        "openai",
        400,
        "VALIDATION_ERROR",
    )


def test_ai_wrong_key_maps_openais_error(gateway):
    control = StreamControl()
    fake = fake_openai(control)
    with fake.serve() as url:
        client = start(gateway, "ai", {"OPENAI_API_URL": url, "OPENAI_API_KEY": "sk-wrong"})
        r = client.post("/ai/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    error = failed(r, "openai", 401, "INVALID_API_KEY")
    assert error["message"] == "Incorrect API key provided." and "sk-wrong" not in r.text


def test_ai_every_route_has_a_contract():
    assert route_names("ai") == {"chat", "embeddings"}
