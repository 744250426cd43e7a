"""`/metrics` in the Prometheus text format, read from the service's own state at each
scrape (nothing is counted twice, nothing goes stale)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from capture.supervise import RESTARTS
from edge.live.delivery import last_drill
from webrtc.guard import DROPS, Cause

if TYPE_CHECKING:
    from edge.live.service import EdgeService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _moment(text: object) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


class ServiceCollector(Collector):
    def __init__(self, service: EdgeService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        health = self.service.health()
        rooms = health["rooms"]
        assert isinstance(rooms, dict)
        live = GaugeMetricFamily("classroom_edge_lesson_live", "A lesson is live", labels=["room"])
        viewers = GaugeMetricFamily(
            "classroom_edge_rendition_subscribers",
            "Subscribers per rendition: viewers, and the recorder on the recorded ones",
            labels=["room", "rendition"],
        )
        recording = GaugeMetricFamily(
            "classroom_edge_recording", "A lesson is being recorded", labels=["room"]
        )
        failed = GaugeMetricFamily(
            "classroom_edge_recording_failed_parts", "Recording parts that failed", labels=["room"]
        )
        due = GaugeMetricFamily(
            "classroom_edge_lesson_due",
            "The timetable says a lesson of the room streams now (its bell has rung)",
            labels=["room"],
        )
        silent = GaugeMetricFamily(
            "classroom_edge_mic_silent",
            "1: the classroom microphone has heard nothing for 30 s or more",
            labels=["room"],
        )
        drill_time = GaugeMetricFamily(
            "classroom_edge_drill_last_timestamp_seconds",
            "When the room's last drill started (Unix time); absent: never drilled",
            labels=["room"],
        )
        drill_passed = GaugeMetricFamily(
            "classroom_edge_drill_passed", "1: the room's last drill passed", labels=["room"]
        )
        drills = self.service.config.site.data_dir / "drills"
        for name, room in rooms.items():
            due.add_metric([name], 1.0 if room["lesson"] is not None else 0.0)
            silent.add_metric([name], 1.0 if room["mic_silent"] else 0.0)
            drill = last_drill(drills, name)
            started = _moment(drill["started"]) if drill is not None else None
            if drill is not None and started is not None:
                drill_time.add_metric([name], started.timestamp())
                drill_passed.add_metric([name], 1.0 if drill["passed"] else 0.0)
        yield from (due, silent, drill_time, drill_passed)
        delivery = self.service.delivery
        if delivery is not None:
            waiting, oldest = delivery.waiting
            yield GaugeMetricFamily(
                "classroom_edge_hub_queue_depth",
                "Lesson reports waiting to reach the school hub",
                value=float(waiting),
            )
            yield GaugeMetricFamily(
                "classroom_edge_hub_oldest_seconds",
                "Age of the oldest lesson report waiting for the school hub",
                value=oldest,
            )
        for name, room in rooms.items():
            live.add_metric([name], 1.0 if room["live"] else 0.0)
            for rendition, state in room["renditions"].items():
                viewers.add_metric([name, rendition], float(state["viewers"]))
            recorder = room.get("recorder")
            if recorder is not None:
                recording.add_metric([name], 1.0 if recorder["recording"] else 0.0)
                failed.add_metric([name], float(recorder["parts_failed"]))
        yield from (live, viewers, recording, failed)
        restarts = CounterMetricFamily(
            "classroom_edge_loop_restarts",
            "Times a background loop failed and was started again",
            labels=["loop"],
        )
        for loop, count in sorted(RESTARTS.items()):
            restarts.add_metric([loop], float(count))
        yield restarts
        drops = CounterMetricFamily(
            "classroom_edge_media_drops",
            "Datagrams the media ports dropped before DTLS/SRTP (empty, oversized, malformed "
            "STUN, before ICE, not from the pupil's ICE pair)",
            labels=["cause"],
        )
        workers = self.service.sessions.worker_stats()
        for cause in Cause:
            in_workers = workers.drops.get(cause.value, 0)
            drops.add_metric([cause.value], float(DROPS.counts[cause] + in_workers))
        yield drops
        yield GaugeMetricFamily(
            "classroom_edge_loop_lag_seconds",
            "How late the service's event loop ran at worst over the last 5 s",
            value=self.service.sessions.lag.recent(5.0),
        )
        yield GaugeMetricFamily(
            "classroom_edge_worker_loop_lag_seconds",
            "How late a viewer worker's event loop ran at worst over the last 2 s "
            "(its viewers' media waits this long)",
            value=workers.lag,
        )
        yield GaugeMetricFamily(
            "classroom_edge_viewer_workers",
            "Viewer worker processes ready (0: viewers are served in the service's process)",
            value=float(workers.workers),
        )
        yield CounterMetricFamily(
            "classroom_edge_viewer_workers_replaced",
            "Viewer workers that died or hung and were started again",
            value=float(workers.replaced),
        )
        up = GaugeMetricFamily(
            "classroom_edge_media_process_up",
            "1: the room's capture and encoders run in their own process, which is answering",
            labels=["room"],
        )
        replaced = CounterMetricFamily(
            "classroom_edge_media_process_replaced",
            "Times the room's media process died or hung and was started again",
            labels=["room"],
        )
        for room, media in self.service.media_processes.items():
            up.add_metric([room], 1.0 if media.answering() else 0.0)
            replaced.add_metric([room], float(media.replaced))
        yield up
        yield replaced
        yield from self._media()
        archive = health["archive"]
        if isinstance(archive, dict):
            yield GaugeMetricFamily(
                "classroom_edge_archive_queue_depth",
                "Recorded lessons waiting for the library",
                value=float(archive["waiting"]),
            )
            yield GaugeMetricFamily(
                "classroom_edge_archive_oldest_seconds",
                "Age of the oldest lesson waiting for the library",
                value=float(archive["oldest_seconds"] or 0),
            )
            yield GaugeMetricFamily(
                "classroom_edge_archive_failing",
                "Waiting lessons whose last upload failed",
                value=float(archive["failing"]),
            )
            yield GaugeMetricFamily(
                "classroom_edge_disk_free_bytes",
                "Free space where recordings live",
                value=float(archive["disk_free_mb"]) * 1e6,
            )
            yield GaugeMetricFamily(
                "classroom_edge_disk_low",
                "1: under the threshold with nothing archived left to delete",
                value=1.0 if archive["disk_low"] else 0.0,
            )

    def _media(self) -> Iterator[Metric]:
        """Per room: viewers, lesson state, devices; per rendition: rate, encoding, drops."""
        service = self.service
        rooms = ["room"]
        per = ["room", "rendition"]
        room_viewers = GaugeMetricFamily(
            "classroom_edge_viewers", "Viewer sessions connected, per room", labels=rooms
        )
        state = GaugeMetricFamily(
            "classroom_edge_lesson_state",
            "1 for the room's lesson state now: idle, warming (devices open) or live",
            labels=["room", "state"],
        )
        device_up = GaugeMetricFamily(
            "classroom_edge_device_up",
            "1: the source delivers (0: failing or missing, its slate is out)",
            labels=["room", "source"],
        )
        device_frames = CounterMetricFamily(
            "classroom_edge_device_frames", "Frames the source delivered", labels=["room", "source"]
        )
        bitrate = GaugeMetricFamily(
            "classroom_edge_rendition_bitrate_bps",
            "Bits a second of the rendition on the wire, last 25 s",
            labels=per,
        )
        fps = GaugeMetricFamily(
            "classroom_edge_rendition_fps",
            "Frames (audio: packets) a second of the rendition, last 25 s",
            labels=per,
        )
        sent = CounterMetricFamily(
            "classroom_edge_rendition_bytes", "Encoded bytes of the rendition", labels=per
        )
        frames = CounterMetricFamily(
            "classroom_edge_encoded_frames", "Frames the rendition's encoder took", labels=per
        )
        encode = CounterMetricFamily(
            "classroom_edge_encode_seconds", "Time spent encoding the rendition", labels=per
        )
        keyframes = CounterMetricFamily(
            "classroom_edge_keyframes", "Keyframes (IDR) of the rendition", labels=per
        )
        requests = CounterMetricFamily(
            "classroom_edge_keyframe_requests",
            "Keyframe requests (viewers joining, losses, falling behind)",
            labels=per,
        )
        dropped = CounterMetricFamily(
            "classroom_edge_dropped_packets",
            "Packets not delivered to a viewer (too far behind, or before its first IDR)",
            labels=per,
        )
        resyncs = CounterMetricFamily(
            "classroom_edge_viewer_resyncs",
            "Times a viewer fell so far behind that it skipped to the next IDR",
            labels=per,
        )
        watching: dict[str, int] = {}
        for session in service.sessions.sessions.values():
            if session.connected_at is not None:
                where = str(session.info.get("room", ""))
                watching[where] = watching.get(where, 0) + 1
        for name, room in service.rooms.items():
            room_viewers.add_metric([name], float(watching.get(name, 0)))
            now = "live" if room.live else "warming" if room.capturing else "idle"
            for each in ("idle", "warming", "live"):
                state.add_metric([name, each], 1.0 if each == now else 0.0)
            status = room.media.status()
            for source in status.sources:
                up = room.capturing and source.state == "running" and not source.missing
                device_up.add_metric([name, source.name], 1.0 if up else 0.0)
                device_frames.add_metric([name, source.name], float(source.frames))
            for encoder in status.encoders:
                rendition = encoder.name
                bus = room.buses.get(rendition)
                if bus is not None:
                    labels = [name, rendition]
                    bitrate.add_metric(labels, bus.wire_bitrate() if room.capturing else 0.0)
                    fps.add_metric(labels, bus.packet_rate() if room.capturing else 0.0)
                    sent.add_metric(labels, float(bus.bytes))
                    frames.add_metric(labels, float(encoder.frames))
                    encode.add_metric(labels, encoder.encode_seconds)
                    keyframes.add_metric(labels, float(bus.keyframes))
                    requests.add_metric(labels, float(encoder.keyframe_requests))
                    dropped.add_metric(labels, float(bus.dropped))
                    resyncs.add_metric(labels, float(bus.resyncs))
        yield from (room_viewers, state, device_up, device_frames, bitrate, fps, sent, frames)
        yield from (encode, keyframes, requests, dropped, resyncs)


def exposition(service: EdgeService) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))
    return generate_latest(registry)
