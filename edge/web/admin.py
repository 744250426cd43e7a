"""The IT staff's page (`/admin`, staff login): each room's state and preview, devices,
the camera's pan/tilt/zoom and presets, config check and edits, logs, the archive queue.

Every change is a JSON POST carrying the page's CSRF token (`X-CSRF-Token`), or comes
with the staff key (`Authorization: Bearer`)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from edge.access.rules import is_staff, problem, staff_csrf
from edge.config.files import write_atomically
from edge.config.settings import ConfigError, load
from edge.live.ptz import CameraControlError
from edge.live.state import room_state
from edge.web.deps import Room, Service, StaffChange, StaffOnly, json_body
from edge.web.pages import NO_STORE, page

if TYPE_CHECKING:
    from edge.live.service import EdgeService

DRILL_REPORT = re.compile(r"[\w-]+-\d{4}-\d{2}-\d{2}-\d{4}(-\d+)?\.(txt|json)")
ROOM_FILE_LIMIT = 64_000


routes = APIRouter()


def check_files(service: EdgeService, drafts: dict[Path, str] | None = None) -> list[str]:
    """What `load` refuses of the config files as they are (or with `drafts` in place)."""
    config = service.config
    try:
        load(config.path, demo=config.demo, data_dir=config.site.data_dir, drafts=drafts)
    except ConfigError as exc:
        return exc.problems
    return []


@routes.get("/admin")
async def admin_page(service: Service, request: Request) -> Response:
    if not is_staff(request, service.staff):
        return RedirectResponse("/login?next=/admin", status_code=303)
    return page(
        "admin.html",
        {
            "school": service.config.site.school,
            "rooms": sorted(service.rooms),
            "csrf": staff_csrf(request, service.staff),
            "demo": service.config.demo,
        },
    )


@routes.get("/api/admin/state", dependencies=[StaffOnly])
async def admin_state(service: Service, request: Request) -> Response:
    health = service.health()
    zone = service.config.zone
    rooms: dict[str, object] = {}
    for name, room in service.rooms.items():
        rooms[name] = {
            **room_state(service, name).for_staff(zone),
            "health": health["rooms"][name],  # type: ignore[index]
            "camera": await room.camera.state(),
            "file": str(service.config.room_files.get(name, "")),
        }
    jobs = service.jobs.jobs("composing", "queued", "uploading")
    return JSONResponse(
        {
            "status": health["status"],
            "viewers": health["viewers"],
            "warnings": health["warnings"],
            "rooms": rooms,
            "archive": health["archive"],
            "queue": [job.as_json(zone) for job in jobs[:50]],
            "now": service.clock.now().astimezone(zone).isoformat(),
        },
        headers=NO_STORE,
    )


@routes.get("/api/admin/devices", dependencies=[StaffOnly])
async def admin_devices(service: Service, request: Request) -> Response:
    from edge.live.devices import list_devices

    devices = await asyncio.to_thread(list_devices)
    return JSONResponse(devices, headers=NO_STORE)


@routes.get("/api/admin/check", dependencies=[StaffOnly])
async def admin_check(service: Service, request: Request) -> Response:
    problems = await asyncio.to_thread(check_files, service)
    return JSONResponse({"ok": not problems, "problems": problems}, headers=NO_STORE)


@routes.get("/api/admin/logs", dependencies=[StaffOnly])
async def admin_logs(service: Service, request: Request, count: int = 100) -> Response:
    return JSONResponse(service.logbook.recent(max(1, min(count, 300))), headers=NO_STORE)


@routes.get("/api/admin/drills", dependencies=[StaffOnly])
async def admin_drills(service: Service, request: Request) -> Response:
    """The saved drill reports, newest first (the principal's records)."""
    reports = await asyncio.to_thread(saved_drills, service.config.site.data_dir / "drills")
    return JSONResponse(reports, headers=NO_STORE)


@routes.get("/drills/{name}", dependencies=[StaffOnly])
async def drill_report(service: Service, name: str, request: Request) -> Response:
    path = service.config.site.data_dir / "drills" / name
    if not DRILL_REPORT.fullmatch(name) or not path.is_file():
        return problem(404, "No such report", f"no drill report {name!r}")
    text = await asyncio.to_thread(path.read_bytes)
    return Response(text, media_type="text/plain; charset=utf-8", headers=NO_STORE)


@routes.get("/api/admin/rooms/{room}/preview.jpg", dependencies=[StaffOnly])
async def admin_preview(
    service: Service, room: Room, request: Request, source: str = "camera"
) -> Response:
    runtime = service.rooms.get(room)
    jpeg = await runtime.preview(source) if runtime is not None else None
    if jpeg is None:
        return problem(404, "No picture", f"{room}/{source} is not capturing now")
    return Response(jpeg, media_type="image/jpeg", headers=NO_STORE)


@routes.get("/api/admin/rooms/{room}/config", dependencies=[StaffOnly])
async def room_config(service: Service, room: Room, request: Request) -> Response:
    file = service.config.room_files[room]
    text = await asyncio.to_thread(file.read_text, encoding="utf-8")
    editable = not service.config.demo
    body = {"file": str(file), "text": text, "editable": editable}
    return JSONResponse(body, headers=NO_STORE)


class RoomFile(BaseModel):
    """A room file's new text; `save`: write it, else only check it."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=ROOM_FILE_LIMIT, description="the room file's TOML")
    save: bool = False


class CameraWish(BaseModel):
    """`{"action": "nudge", "pan": -1 | 0 | 1, "tilt": …, "zoom": …}`, `{"action":
    "recall", "name": "board"}` or `{"action": "save", "name": "board", "label": …}`."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["nudge", "recall", "save"]
    pan: StrictInt = Field(0, ge=-10, le=10, description="whole steps")
    tilt: StrictInt = Field(0, ge=-10, le=10)
    zoom: StrictInt = Field(0, ge=-10, le=10)
    name: str = Field("", max_length=64, description="a preset's name")
    label: str = Field("", max_length=100, description="how the buttons show the preset")

    @model_validator(mode="after")
    def _named(self) -> CameraWish:
        if self.action != "nudge" and not self.name:
            raise ValueError(f"{self.action} needs the preset's name")
        return self


@routes.post("/api/admin/rooms/{room}/config", dependencies=[StaffChange])
async def room_config_save(
    room: Room,
    wish: Annotated[RoomFile, Depends(json_body(RoomFile, ROOM_FILE_LIMIT * 4 + 1024))],
    service: Service,
) -> Response:
    """Check a room file's new text against the whole site; with `save`, write it (the
    old one kept as .bak) and apply what can be applied without a restart."""
    file = service.config.room_files[room]
    problems = await asyncio.to_thread(check_files, service, {file: wish.text})
    if problems:
        return JSONResponse({"ok": False, "problems": problems}, status_code=422)
    if not wish.save:
        return JSONResponse({"ok": True, "problems": [], "saved": False})
    if service.config.demo:
        return problem(409, "Demo", "the embedded demo's files are not edited")
    try:
        await asyncio.to_thread(_save_with_backup, file, wish.text)
        fresh = await asyncio.to_thread(
            load, service.config.path, data_dir=service.config.site.data_dir
        )
    except (OSError, ConfigError) as exc:
        return problem(500, "Not saved", f"{file}: {exc}")
    applied, restart = service.apply_room(room, fresh)
    return JSONResponse(
        {"ok": True, "problems": [], "saved": True, "applied": applied, "restart": restart}
    )


@routes.get("/api/rooms/{room}/camera", dependencies=[StaffOnly])
async def camera_state(service: Service, room: Room, request: Request) -> Response:
    return JSONResponse(await service.rooms[room].camera.state(), headers=NO_STORE)


@routes.post("/api/rooms/{room}/camera", dependencies=[StaffChange])
async def camera_action(
    room: Room, wish: Annotated[CameraWish, Depends(json_body(CameraWish))], service: Service
) -> Response:
    camera = service.rooms[room].camera
    try:
        if wish.action == "nudge":
            position = await camera.nudge(pan=wish.pan, tilt=wish.tilt, zoom=wish.zoom)
        elif wish.action == "recall":
            position = await camera.recall(wish.name)
        else:
            position = await camera.save(wish.name, wish.label)
    except CameraControlError as exc:
        return problem(exc.status, "Camera", exc.message)
    return JSONResponse({"position": position.as_json(), "presets": camera.labels()})


def saved_drills(folder: Path) -> list[dict[str, object]]:
    """Each drill report in `folder`: its files, room, times and verdict."""
    found = []
    for path in sorted(folder.glob("*.json"), reverse=True) if folder.is_dir() else []:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or not DRILL_REPORT.fullmatch(path.name):
            continue
        found.append(
            {
                "text": path.with_suffix(".txt").name,
                "json": path.name,
                "room": report.get("room"),
                "started": report.get("started"),
                "passed": report.get("passed"),
                "verdict": report.get("verdict"),
            }
        )
    return found


def _save_with_backup(file: Path, text: str) -> None:
    if file.exists():
        write_atomically(file.with_name(file.name + ".bak"), file.read_text(encoding="utf-8"))
    write_atomically(file, text)
