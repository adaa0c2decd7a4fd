"""The `openai` backend: any server that speaks OpenAI's chat completions API (vLLM, llama.cpp server, Ollama,
a hosted API). The key comes from the environment variable named by `[summariser] api_key_env`.

`[summariser] concurrency` requests are kept in flight (one thread each, over one pooled HTTP client), so a
server that batches concurrent requests stays busy; papers are committed every `4 x concurrency`.

A server that is down, answers with an error status or does not answer in time stops the run with a
SummariserError (summaries already written stay stored); an answer that is not the expected JSON counts as an
empty summary, so the grounding check sends that paper down the stricter retry and the extractive fallback.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import httpx

from digest.errors import SummariserError
from digest.summarise import prompts
from digest.summarise.base import Summariser, Task

log = logging.getLogger(__name__)

OVERVIEW_MAX_TOKENS = 200


class OpenAISummariser(Summariser):
    """Any OpenAI-compatible chat-completions server, several requests at a time."""

    def summarise(self, tasks: list[Task], strict: bool = False) -> list[str]:
        workers = max(1, min(self.settings.concurrency, len(tasks)))
        limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
        with httpx.Client(timeout=self.settings.timeout_seconds, headers=self.headers(), limits=limits) as client:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(lambda task: self.complete(client, task, strict), tasks))

    @property
    def tasks_per_commit(self) -> int:
        return self.settings.concurrency * 4

    def headers(self) -> dict[str, str]:
        key = os.environ.get(self.settings.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    @property
    def url(self) -> str:
        return self.settings.base_url.rstrip("/") + "/chat/completions"

    def complete(self, client: httpx.Client, task: Task, strict: bool) -> str:
        body = {
            "model": self.settings.model,
            "messages": prompts.messages(task, strict),
            "temperature": 0,
            "max_tokens": self.settings.max_new_tokens if task.kind == "tldr" else OVERVIEW_MAX_TOKENS,
        }
        try:
            response = client.post(self.url, json=body)
        except httpx.TimeoutException:
            raise SummariserError(
                f"summariser server {self.url} did not answer within {self.settings.timeout_seconds:g} s "
                "([summariser] timeout_seconds)"
            ) from None
        except httpx.HTTPError as exc:
            raise SummariserError(f"cannot reach summariser server {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise SummariserError(
                f"summariser server {self.url} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        return answer_text(response, self.url)


def answer_text(response: httpx.Response, url: str) -> str:
    """The first choice's message, or "" (logged) when the body is not a chat completion."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        log.warning("summariser server %s sent an answer that is not a chat completion: %.200r", url, response.text)
        return ""
    return content if isinstance(content, str) else ""
