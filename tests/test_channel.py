"""The classroom channel (edge/web/channel.py): a pupil's page takes part on a channel of
its own, and its media (receive-only WHEP here) is linked to it; a turn to speak is a WHIP
session, for the allowed device only. Real service in this loop, real aiortc peers."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription

from edge.access.tokens import Grant
from edge.school.clock import SystemClock
from tests.classroom_client import ClassroomChannel
from tests.conftest import SMALL_ROOM, serve_in_process, write_site
from tests.whep_client import Viewer, eventually

ROSTER = "Mã định danh,Họ và tên,Lớp\n0101000001,Nguyễn Văn An,6A1\n0101000002,Trần Thị Bình,6A1\n"
SITE = 'school = "Trường Thử"\nroster = "roster.csv"\n'
ROOM = SMALL_ROOM + '[speaker]\nkind = "alsa"\ndevice = "null"\n'


async def publish_microphone(url: str, token: str) -> tuple[httpx.Response, RTCPeerConnection]:
    """A WHIP offer of one sending audio line (aiortc's silence), as the page makes it."""
    pc = RTCPeerConnection()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            url,
            content=pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
        )
    if answer.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
    return answer, pc


async def test_a_pupil_takes_part_on_the_channel_and_speaks_by_whip(tmp_path: Path) -> None:
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    config = write_site(tmp_path, {"r1": ROOM}, SITE)
    async with serve_in_process(config, tmp_path / "data", SystemClock()) as (service, base):
        later = int(time.time()) + 3600
        an = service.signer.issue(Grant("r1", "6A1", "0101000001", later))
        binh = service.signer.issue(Grant("r1", "6A1", "0101000002", later))
        classroom = service.rooms["r1"].classroom
        console = f"{base}/api/rooms/r1/console"
        async with httpx.AsyncClient(timeout=10) as client:
            # no link, a bad link: refused before anything is opened
            assert (await client.post(f"{base}/classroom/r1", json={})).status_code == 401
            nobody = ClassroomChannel(f"{base}/classroom/r1", "x.y")
            assert (await nobody.open()).status_code == 401
            await nobody.close()

            # An's page: the channel, then the picture named for it
            viewer = Viewer(f"{base}/whep/r1", an, video_lines=1, channel=True)
            assert (await viewer.connect()).status_code == 201
            assert viewer.classroom is not None and viewer.classroom.id is not None
            channel_id = viewer.classroom.id
            assert await eventually(lambda: viewer.stats["camera"].frames >= 5, 20)
            hello = viewer.received[0]
            assert hello["type"] == "hello" and hello["name"] == "Nguyễn Văn An", hello

            async def state() -> dict[str, Any]:
                answer: dict[str, Any] = (await client.get(console)).json()
                return answer

            # one pupil, once: the page's channel and its media are one participant
            online = (await state())["online"]
            assert [(p["name"], p["verified"], p["devices"]) for p in online] == [
                ("Nguyễn Văn An", True, 1)
            ], online
            whep_id = next(iter(service.sessions.sessions))
            assert set(classroom.channels) == {channel_id}
            assert whep_id in classroom.channels[channel_id].media

            def presence() -> list[tuple[str, str | None, bool]]:
                now = dt.datetime.now(dt.UTC)
                rows = service.attendance.presence("6A1", now - dt.timedelta(hours=1), now)
                return [(p.session_id, "left" if p.left_at else None, p.verified) for p in rows]

            assert await eventually(lambda: presence() == [(channel_id, None, True)], 5), (
                presence()
            )  # the channel is An's presence (not the media session)

            # no decoder for a pupil who watches: the session only sends
            assert viewer.response is not None
            answer_sdp = viewer.response.text  # the answer the service gave
            assert "a=sendrecv" not in answer_sdp and "m=application" not in answer_sdp

            # a hand and a message reach the console; the page hears back on its channel
            said = await viewer.classroom.say({"type": "hand", "up": True})
            assert said.status_code == 204
            said = await viewer.classroom.say({"type": "message", "text": "Thưa cô, em hỏi ạ"})
            assert said.status_code == 204
            now = await state()
            assert [h["name"] for h in now["hands"]] == ["Nguyễn Văn An"], now
            assert now["messages"][0]["text"] == "Thưa cô, em hỏi ạ", now
            assert await eventually(
                lambda: (
                    {"type": "sent"} in viewer.received
                    and {"type": "hand", "up": True} in viewer.received
                ),
                5,
            ), viewer.received
            # another pupil's link cannot speak for An's channel, nor post on it
            forged = await client.post(
                str(viewer.classroom.location),
                json={"type": "message", "text": "giả danh"},
                headers={"Authorization": f"Bearer {binh}"},
            )
            assert forged.status_code == 403, forged.text

            # speaking: refused until the teacher allows this device, then heard
            whip = f"{base}/whip/r1?channel={channel_id}"
            early, early_pc = await publish_microphone(whip, an)
            await early_pc.close()
            assert early.status_code == 403 and "chưa được" in early.json()["detail"]
            key = online[0]["key"]
            allowed = await client.post(console, json={"action": "allow_speak", "key": key})
            assert allowed.status_code == 200, allowed.text
            assert await eventually(
                lambda: {"type": "speak", "allowed": True} in viewer.received, 5
            )
            ducked = service.rooms["r1"].buses["mic/ducked"]
            assert await eventually(lambda: ducked.subscribers == 1, 10), ducked.subscribers
            stranger, stranger_pc = await publish_microphone(whip, binh)
            await stranger_pc.close()
            assert stranger.status_code == 403, stranger.text
            talking, talk_pc = await publish_microphone(whip, an)
            assert talking.status_code == 201, talking.text
            assert talking.headers["location"].startswith("/whip/r1/")
            assert await eventually(lambda: classroom.talk is not None, 5)
            assert await eventually(lambda: classroom.talk.connected_at is not None, 15)  # type: ignore[union-attr]
            # the teacher ends the turn: the talk session is closed by the service
            muted = await client.post(console, json={"action": "mute", "key": key})
            assert muted.status_code == 200
            assert await eventually(lambda: not service.talks, 5)
            assert {"type": "speak", "allowed": False} in viewer.received
            # An hears the room's own microphone again, not the ducked one
            assert await eventually(lambda: ducked.subscribers == 0, 10), ducked.subscribers
            await talk_pc.close()

            # a reconnect of the event stream resumes the same channel (no new presence)
            assert viewer.classroom._tasks
            for task in viewer.classroom._tasks:
                task.cancel()
            await asyncio.gather(*viewer.classroom._tasks, return_exceptions=True)
            assert await eventually(lambda: classroom.channels[channel_id].streams == 0, 5)
            again = ClassroomChannel(f"{base}/classroom/r1", an)
            again.id, again.location = channel_id, viewer.classroom.location
            events = f"{base}/classroom/r1/{channel_id}/events"
            again._tasks.append(asyncio.create_task(again._read(events)))
            assert await eventually(lambda: classroom.channels[channel_id].streams == 1, 5)
            assert list(classroom.channels) == [channel_id]
            assert presence() == [(channel_id, None, True)]  # still one presence

            # the teacher removes An: the page hears it, its picture ends, no way back
            removed = await client.post(console, json={"action": "remove", "key": key})
            assert removed.status_code == 200
            assert await eventually(lambda: {"type": "removed"} in again.received, 5)
            assert await eventually(lambda: not service.sessions.sessions, 10)
            assert channel_id not in classroom.channels
            assert await eventually(lambda: presence() == [(channel_id, "left", True)], 5)
            back = ClassroomChannel(f"{base}/classroom/r1", an)
            assert (await back.open()).status_code == 403
            await back.close()
            await again.close(goodbye=False)
            await viewer.close()
