"""A GStreamer `webrtcbin` + libnice WHEP viewer, as set-top boxes and signage players use.

Runs under Debian's /usr/bin/python3 (python3-gi; the test venv has no `gi`):

    gst_whep_viewer.py WHEP_URL TOKEN SECONDS SETUP RESULT.json

It POSTs a recvonly offer (camera H.264 + Opus; webrtcbin's own RSA-2048 DTLS
certificate), with `a=setup:SETUP` in the offer it sends (`actpass` as webrtcbin makes
it, or `active` / `passive` munged in), trickles its candidates by PATCH, decodes video
and audio for SECONDS after the first decoded frame, DELETEs the session twice (200,
then 404), reads `/healthz` and writes what happened as JSON. Every wait is bounded.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import Gst, GstSdp, GstWebRTC  # noqa: E402

VIDEO_CAPS = (
    "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
    "packetization-mode=(string)1,profile-level-id=(string)42e01f"
)
AUDIO_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"
CONNECT_WITHIN = 15.0


def http(
    method: str, url: str, token: str, body: bytes | None, content_type: str | None
) -> tuple[int, Message, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def munge_setup(sdp: str, setup: str) -> str:
    lines = sdp.splitlines()
    out = [f"a=setup:{setup}" if line.startswith("a=setup:") else line for line in lines]
    return "\r\n".join(out) + "\r\n"


class Viewer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.video_frames = 0
        self.video_first: float | None = None
        self.video_last: float | None = None
        self.video_size: tuple[int, int] | None = None
        self.audio_buffers = 0
        self.audio_seconds = 0.0
        self.candidates: queue.Queue[tuple[int, str]] = queue.Queue()
        self.states: list[str] = []
        self.errors: list[str] = []
        self.pipe = Gst.Pipeline.new("viewer")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "recv")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        recvonly = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
        for caps in (VIDEO_CAPS, AUDIO_CAPS):
            self.webrtc.emit("add-transceiver", recvonly, Gst.Caps.from_string(caps))
        self.webrtc.connect("on-ice-candidate", self.on_candidate)
        self.webrtc.connect("pad-added", self.on_pad)
        self.webrtc.connect("notify::connection-state", self.on_state)

    def on_candidate(self, _element: Gst.Element, mline: int, candidate: str) -> None:
        self.candidates.put((mline, candidate))

    def on_state(self, element: Gst.Element, _spec: object) -> None:
        state = element.get_property("connection-state").value_nick
        self.states.append(state)

    def on_pad(self, _element: Gst.Element, pad: Gst.Pad) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded_pad)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded_pad(self, _element: Gst.Element, pad: Gst.Pad) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        kind = caps.get_structure(0).get_name()
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        sink.set_property("signal-handoffs", True)
        if kind.startswith("video/"):
            sink.connect("handoff", self.on_video)
        elif kind.startswith("audio/"):
            sink.connect("handoff", self.on_audio)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def on_video(self, _sink: Gst.Element, _buffer: Gst.Buffer, pad: Gst.Pad) -> None:
        now = time.monotonic()
        with self.lock:
            self.video_frames += 1
            self.video_first = self.video_first or now
            self.video_last = now
            if self.video_size is None:
                structure = pad.get_current_caps().get_structure(0)
                self.video_size = (
                    structure.get_int("width").value,
                    structure.get_int("height").value,
                )

    def on_audio(self, _sink: Gst.Element, buffer: Gst.Buffer, _pad: Gst.Pad) -> None:
        with self.lock:
            self.audio_buffers += 1
            if buffer.duration != Gst.CLOCK_TIME_NONE:
                self.audio_seconds += buffer.duration / Gst.SECOND

    def create_offer(self) -> str:
        """webrtcbin's offer, set as its local description; its SDP text."""
        promise = Gst.Promise.new()
        self.webrtc.emit("create-offer", None, promise)
        if promise.wait() != Gst.PromiseResult.REPLIED:
            raise RuntimeError("create-offer: no reply")
        # the offer lives in the reply: keep `reply` (and `promise`) alive while it is used
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        text: str = offer.sdp.as_text()
        done = Gst.Promise.new()
        self.webrtc.emit("set-local-description", offer, done)
        done.wait()
        return text

    def set_answer(self, text: str) -> None:
        ok, message = GstSdp.SDPMessage.new_from_text(text)
        if ok != GstSdp.SDPResult.OK:
            raise RuntimeError(f"unparsable answer: {text!r}")
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
        promise = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", answer, promise)
        promise.wait()

    def drain_bus(self) -> None:
        bus = self.pipe.get_bus()
        for _ in range(100):
            message = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING)
            if message is None:
                return
            if message.type == Gst.MessageType.ERROR:
                error, debug = message.parse_error()
            else:
                error, debug = message.parse_warning()
            self.errors.append(f"{message.src.get_name()}: {error.message} ({debug})"[:500])


def fragment(offer_sdp: str, items: list[tuple[int, str]], end: bool) -> str:
    """An RFC 8840 sdpfrag: the offer's ufrag/pwd, one m-section per m-line index."""
    ufrag = next(line for line in offer_sdp.splitlines() if line.startswith("a=ice-ufrag:"))
    pwd = next(line for line in offer_sdp.splitlines() if line.startswith("a=ice-pwd:"))
    mids = [line[6:] for line in offer_sdp.splitlines() if line.startswith("a=mid:")]
    lines = [ufrag, pwd]
    for index, mid in enumerate(mids):
        chosen = [c for m, c in items if m == index]
        if not chosen and not (end and index == 0):
            continue
        lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 0", f"a=mid:{mid}"]
        lines += [f"a={c}" if not c.startswith("a=") else c for c in chosen]
        if end and index == 0:
            lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def main() -> int:
    url, token, seconds, setup, result_path = sys.argv[1:6]
    watch = float(seconds)
    Gst.init(None)
    viewer = Viewer()
    result: dict[str, object] = {"setup": setup}
    started = time.monotonic()
    viewer.pipe.set_state(Gst.State.PLAYING)
    offer_sdp = viewer.create_offer()
    sent_sdp = offer_sdp if setup == "actpass" else munge_setup(offer_sdp, setup)
    status, headers, answer = http("POST", url, token, sent_sdp.encode(), "application/sdp")
    result["post_status"] = status
    if status != 201:
        result["post_body"] = answer[:500]
        return finish(viewer, result, result_path)
    location = urllib.parse.urljoin(url, headers.get("Location", ""))
    answer_setup = [line for line in answer.splitlines() if line.startswith("a=setup:")]
    result["answer_setup"] = sorted(set(answer_setup))
    viewer.set_answer(answer)
    # trickle: every candidate webrtcbin finds, PATCHed as it comes, then the end
    patches: list[int] = []
    deadline = time.monotonic() + CONNECT_WITHIN
    gathered = False
    while time.monotonic() < deadline and not gathered:
        batch: list[tuple[int, str]] = []
        try:
            batch.append(viewer.candidates.get(timeout=0.1))
            while not viewer.candidates.empty() and len(batch) < 50:
                batch.append(viewer.candidates.get_nowait())
        except queue.Empty:
            pass
        state = viewer.webrtc.get_property("ice-gathering-state")
        gathered = state == GstWebRTC.WebRTCICEGatheringState.COMPLETE
        if batch or gathered:
            body = fragment(offer_sdp, batch, gathered).encode()
            status, _, _ = http("PATCH", location, token, body, "application/trickle-ice-sdpfrag")
            patches.append(status)
    result["patches"] = patches
    result["candidates_sent"] = sum(1 for _ in patches)
    # watch: until SECONDS after the first decoded frame, or the connection fails
    while time.monotonic() < deadline + watch:
        viewer.drain_bus()
        with viewer.lock:
            first = viewer.video_first
        if "failed" in viewer.states:
            break
        if first is not None and time.monotonic() >= first + watch:
            break
        if first is None and time.monotonic() > deadline:
            break
        time.sleep(0.05)
    with viewer.lock:
        result["video_frames"] = viewer.video_frames
        span = (viewer.video_last or 0) - (viewer.video_first or 0)
        result["video_span"] = round(span, 3)
        result["video_fps"] = round(viewer.video_frames / span, 2) if span > 0 else 0.0
        result["video_size"] = viewer.video_size
        result["audio_buffers"] = viewer.audio_buffers
        result["audio_seconds"] = round(viewer.audio_seconds, 3)
        result["first_frame_after"] = (
            round(viewer.video_first - started, 3) if viewer.video_first else None
        )
    result["delete_status"] = http("DELETE", location, token, None, None)[0]
    result["delete_again_status"] = http("DELETE", location, token, None, None)[0]
    health = http("GET", urllib.parse.urljoin(url, "/healthz"), token, None, None)[2]
    result["viewers_after"] = json.loads(health).get("viewers")
    return finish(viewer, result, result_path)


def finish(viewer: Viewer, result: dict[str, object], path: str) -> int:
    viewer.drain_bus()
    result["states"] = viewer.states
    result["errors"] = viewer.errors[:20]
    viewer.pipe.set_state(Gst.State.NULL)
    with open(path, "w", encoding="utf-8") as out:
        json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
