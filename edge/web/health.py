"""For monitoring: `GET /healthz` (200 ok, 503 degraded; `?detail=1` adds the process's
threads, tasks and peer connections) and `GET /metrics` (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from edge.web.deps import Service
from edge.web.metrics import CONTENT_TYPE, exposition

routes = APIRouter()


@routes.get("/metrics")
async def metrics(service: Service) -> Response:
    return Response(exposition(service), media_type=CONTENT_TYPE)


@routes.get("/healthz")
async def healthz(service: Service, detail: bool = False) -> JSONResponse:
    health = service.health()
    if detail:
        health["process"] = service.process_counts()
    return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)
