"""Bad input gets the documented status, and never disturbs the next good viewer."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from edge.access.tokens import Grant, TokenSigner
from tests.conftest import Service, run_service, write_site
from tests.whep_client import Viewer, eventually
from webrtc.viewer import WhepViewer

OFFER_HEADERS = {"Content-Type": "application/sdp"}


async def good_viewer_plays(service: Service) -> None:
    viewer = Viewer(service.whep(), service.token(), audio=False, video_lines=1)
    try:
        response = await viewer.connect()
        assert response.status_code == 201, response.text
        assert await eventually(lambda: viewer.stats["camera"].frames >= 5, 10)
    finally:
        await viewer.close()


def expired_token(service: Service) -> str:
    signer = TokenSigner((service.data_dir / "secret").read_bytes())
    return signer.issue(Grant("demo", "6A1", None, int(time.time()) - 60))


async def real_offer() -> str:
    viewer = Viewer("http://unused", "x")
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    del viewer
    return sdp


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("bad token", 401),
        ("expired token", 401),
        ("no token", 401),
        ("unknown room", 404),
        ("wrong content type", 415),
        ("garbage sdp", 400),
        ("sdp without media", 400),
        ("one megabyte", 413),
        ("no codec in common", 400),
    ],
)
async def test_bad_input(demo_service: Service, case: str, status: int) -> None:
    token = demo_service.token()
    url = demo_service.whep()
    headers = {**OFFER_HEADERS, "Authorization": f"Bearer {token}"}
    body = await real_offer()
    if case == "bad token":
        headers["Authorization"] = "Bearer " + token[:-4] + "AAAA"
    elif case == "expired token":
        headers["Authorization"] = f"Bearer {expired_token(demo_service)}"
    elif case == "no token":
        del headers["Authorization"]
    elif case == "unknown room":
        url = demo_service.whep("no-such-room")
    elif case == "wrong content type":
        headers["Content-Type"] = "text/plain"
    elif case == "garbage sdp":
        body = "v=0\r\nthis is not SDP \x00\x01 at all\r\nm=video x y\r\n"
    elif case == "sdp without media":
        body = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    elif case == "one megabyte":
        body = "v=0\r\n" + "a=x-padding:" + "x" * (1024 * 1024) + "\r\n"
    elif case == "no codec in common":  # video only, neither H.264 nor VP8: nothing to send
        body = re.sub(r"(a=rtpmap:\d+ )(?:VP8|H264)/90000", r"\1VP9/90000", body)
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(url, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    if status == 401:
        assert "bearer" in response.headers["www-authenticate"].lower()
    await good_viewer_plays(demo_service)


async def test_join_page(demo_service: Service) -> None:
    links = demo_service.links()
    pupil = next(link for link in links if link["kind"] == "student")
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(f"{demo_service.base}/join/{pupil['token']}")
        assert page.status_code == 200
        assert '<html lang="vi"' in page.text
        assert str(pupil["name"]) in page.text and str(pupil["token"]) in page.text
        assert "{{CONFIG}}" not in page.text
        bad = await client.get(f"{demo_service.base}/join/not-a-token")
        assert (bad.status_code == 401 and "hết hạn" in bad.text) or "hiệu lực" in bad.text
        script = await client.get(f"{demo_service.base}/static/join/whep.js")
        assert script.status_code == 200 and "RTCPeerConnection" in script.text


@pytest.fixture(scope="module")
def site_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("idle")
    config = write_site(
        tmp,
        {
            "r101": 'class = "7B2"\n[camera]\nkind = "test"\n[mic]\nkind = "test"\n',
            # periodic IDRs only every 10 s: a joiner must get one requested for it
            "r102": 'class = "8C3"\nalways_live = true\n[camera]\nkind = "test"\n'
            "[[camera_renditions]]\nwidth = 640\nheight = 360\nfps = 15\nbitrate_kbps = 300\n"
            "keyframe_interval = 10\n",
        },
        site='school = "Trường Thử"\n[webrtc]\nconnect_timeout = 5\n'
        '[[webrtc.ice_servers]]\nurls = ["stun:stun.school.test:3478"]\n'
        '[[webrtc.ice_servers]]\nurls = ["turn:turn.school.test:3478?transport=udp"]\n'
        'username = "u"\ncredential = "p"\n',
    )
    with run_service(tmp, ["--config", str(config)]) as service:
        yield service


async def test_no_lesson_live_is_409_with_next_start(site_service: Service) -> None:
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            site_service.whep("r101"),
            content=await real_offer(),
            headers={**OFFER_HEADERS, "Authorization": f"Bearer {site_service.token('r101')}"},
        )
    assert response.status_code == 409, response.text
    assert "next_start" in response.json()
    assert response.headers["retry-after"]


async def test_links_cli_contract(site_service: Service) -> None:
    links = site_service.links("r101")
    assert links[0]["kind"] == "class" and links[0]["class"] == "7B2"
    assert set(links[0]) == {"kind", "room", "class", "student_id", "name", "url", "whep", "token"}
    assert str(links[0]["whep"]).endswith("/whep/r101")


async def test_joiner_gets_a_keyframe_at_once_and_ice_links(site_service: Service) -> None:
    """Periodic IDRs are 10 s apart here; every joiner still sees a picture within ~1 s."""
    for _ in range(3):
        viewer = Viewer(
            site_service.whep("r102"), site_service.token("r102"), video_lines=1, audio=False
        )
        try:
            response = await viewer.connect()
            assert response.status_code == 201, response.text
            links = response.headers.get_list("link")
            assert '<stun:stun.school.test:3478>; rel="ice-server"' in links
            assert any(
                v.startswith("<turn:turn.school.test:3478?transport=udp>")
                and 'username="u"' in v
                and 'credential="p"' in v
                for v in links
            )
            camera = viewer.stats["camera"]
            await eventually(lambda: camera.first_frame_at is not None, 5)  # noqa: B023
            first = camera.first_frame_at
            assert first is not None, "no picture within 5 s"
            assert first - viewer.started_at < 2.5
        finally:
            await viewer.close()
        await asyncio.sleep(1.1)  # past the keyframe rate limit


async def test_a_viewer_that_never_connects_is_dropped(site_service: Service) -> None:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            site_service.whep("r102"),
            content=pc.localDescription.sdp,
            headers={**OFFER_HEADERS, "Authorization": f"Bearer {site_service.token('r102')}"},
        )
    await pc.close()  # never applies the answer: ICE never starts
    assert response.status_code == 201
    assert site_service.health()["viewers"] == 1

    def dropped() -> bool:
        return site_service.health()["viewers"] == 0

    assert await eventually(dropped, 12, step=0.5)  # connect_timeout = 5 s

    def released() -> bool:  # a viewer worker collects its garbage once idle, then says so
        process = site_service.health(detail=True)["process"]
        assert isinstance(process, dict)
        return bool(process["peer_connections"] == 0)

    assert await eventually(released, 5, step=0.5)


async def test_a_viewer_that_never_offered_closes_quietly() -> None:
    """The drill and the tests close their viewers in `finally`, also when the offer
    never ran (the service refused before it, or a timeout)."""
    viewer = WhepViewer("http://127.0.0.1:9/whep/demo", "no-token")
    await viewer.close()
    await viewer.close()
