"""A pupil's classroom channel, as the page opens it (edge/web/channel.py): `POST
/classroom/{room}`, the event stream read in a task, messages POSTed. `Viewer(channel=True)`
opens one before its WHEP POST and names it there."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx


def classroom_url(whep_url: str) -> str:
    """The channel's address for a WHEP address (`?as=` kept)."""
    url = httpx.URL(whep_url)
    return str(url.copy_with(path=url.path.replace("/whep/", "/classroom/", 1)))


@dataclass
class ClassroomChannel:
    url: str  # POST /classroom/{room}[?as=...]
    token: str
    device: str = field(default_factory=lambda: secrets.token_hex(8))
    received: list[dict[str, Any]] = field(default_factory=list)
    id: str | None = None
    location: str | None = None
    opened: httpx.Response | None = None
    streaming: asyncio.Event = field(default_factory=asyncio.Event)
    client: httpx.AsyncClient | None = None
    """For the POSTs and the DELETE (the pupil's address); one of its own when None."""
    _own: httpx.AsyncClient | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def _client(self) -> httpx.AsyncClient:
        if self.client is not None:
            return self.client
        if self._own is None:
            self._own = httpx.AsyncClient(timeout=10)
        return self._own

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def open(self) -> httpx.Response:
        """Open the channel and start reading its events; the answer (201, or the refusal)."""
        self.opened = await self._client.post(
            self.url, json={"device": self.device}, headers=self.headers
        )
        if self.opened.status_code == 201:
            body = self.opened.json()
            self.id = body["channel"]
            self.location = str(httpx.URL(self.url).join(self.opened.headers["location"]))
            events = str(httpx.URL(self.url).join(body["events"]))
            self._tasks.append(asyncio.create_task(self._read(events)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.streaming.wait()
        return self.opened

    async def _read(self, events: str) -> None:
        with contextlib.suppress(httpx.HTTPError, asyncio.CancelledError):
            async with (
                httpx.AsyncClient(timeout=None) as client,
                client.stream("GET", events) as response,
            ):
                self.streaming.set()
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        self.received.append(json.loads(line[6:]))

    async def say(self, message: dict[str, Any]) -> httpx.Response:
        assert self.location is not None, "the channel is not open"
        return await self._client.post(self.location, json=message, headers=self.headers)

    def send(self, message: dict[str, Any]) -> None:
        """`say` in a task of its own (awaited by `close()`)."""
        self._tasks.append(asyncio.create_task(self._said(message)))

    async def _said(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self.say(message)

    async def close(self, goodbye: bool = True) -> None:
        if goodbye and self.location is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self._client.delete(self.location, headers=self.headers)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own is not None:
            await self._own.aclose()
