"""The HTTP face of the service: the app, its lifespan (the service's start and stop),
its refusals, and the routers of each page family."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import ClientDisconnect

from edge.access.connections import BodyTimeout
from edge.access.rules import cors_headers, problem
from edge.live.service import EdgeService
from edge.web import (
    admin,
    channel,
    console,
    health,
    join,
    lessons,
    principal,
    relay_api,
    rewatch,
    school,
    whep,
)
from edge.web.deps import Refused
from edge.web.pages import STATIC

logger = logging.getLogger(__name__)

ROUTERS = (
    whep,
    channel,
    join,
    lessons,
    console,
    rewatch,
    principal,
    admin,
    school,
    relay_api,
    health,
)


def create_app(service: EdgeService) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="classroom-edge", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service  # for the dependencies (edge/web/deps.py)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        """A dependency's refusal, readable by a player on an allowed site."""
        allowed = cors_headers(request, service.config.site.http.cors_origins, request.method)
        for name, value in allowed.items():
            exc.response.headers.setdefault(name, value)
        return exc.response

    @app.exception_handler(BodyTimeout)
    async def body_timeout(request: Request, exc: BodyTimeout) -> JSONResponse:
        return problem(408, "Request timeout", str(exc), {"Connection": "close"})

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody is left to read it; no traceback either

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    for module in ROUTERS:
        app.include_router(module.routes)
    return app
