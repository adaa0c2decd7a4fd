"""An OpenAI-compatible chat completions server on loopback for tests (Starlette + uvicorn in a thread).

    with ChatServer() as server:
        ...  # server.url, server.requests, server.mode = "garbage" | "500" | "hang", server.delay, server.gate
"""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from digest.summarise import grounding
from digest.summarise.extractive import best_sentences, trim


class ChatServer:
    """An OpenAI-compatible chat completions server on loopback (Starlette + uvicorn in a thread). It answers with
    the first sentence of what it is given (or, for a title in `scripted`, with the answers listed there, in turn,
    before that), or misbehaves on request: `garbage`, `500`, `hang`, `fail_after`.
    `delay` makes each answer take that long; `most_in_flight` records how many requests overlapped at most;
    with `gate` set no answer goes out before that many requests were in flight at once."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.scripted: dict[str, list[str]] = {}
        self.fail_after: int | None = None
        self.delay = 0.0
        self.gate = 0
        self.in_flight = self.most_in_flight = 0
        self.requests: list[dict] = []
        self.authorizations: list[str | None] = []
        app_ = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app_, host="127.0.0.1", port=0, log_level="error",
                                                   timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def chat(self, request: Request):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            while self.most_in_flight < self.gate:
                await asyncio.sleep(0.01)
            await asyncio.sleep(self.delay)
            return await self.answer(request)
        finally:
            self.in_flight -= 1

    async def answer(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("authorization"))
        failing = self.fail_after is not None and len(self.requests) > self.fail_after
        if self.mode == "500" or failing:
            return PlainTextResponse("internal error", status_code=500)
        if self.mode == "hang":
            await asyncio.sleep(3)
        if self.mode == "garbage":
            return PlainTextResponse("<html>definitely not JSON</html>")
        prompt = body["messages"][-1]["content"]
        title = prompt.split("\n", 1)[0].removeprefix("Title: ")
        if self.scripted.get(title):
            text = self.scripted[title].pop(0)
        else:
            source = prompt.split("Abstract: ", 1)[-1].split("\n\n")[0]
            answers = [trim(sentence, 25) for sentence in best_sentences(source, "", 2)]
            text = next((a for a in answers if not grounding.filler_phrases(a)), answers[0])  # avoids filler
        return JSONResponse({"object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(5)
