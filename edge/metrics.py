"""`/metrics` in the Prometheus text format, read from the service's own state at each
scrape (nothing is counted twice, nothing goes stale)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .service import EdgeService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
        for name, room in rooms.items():
            live.add_metric([name], 1.0 if room["live"] else 0.0)
            for rendition, state in room["renditions"].items():
                viewers.add_metric([name, rendition], float(state["viewers"]))
            recorder = room.get("recorder")
            if recorder is not None:
                recording.add_metric([name], 1.0 if recorder["recording"] else 0.0)
                failed.add_metric([name], float(recorder["parts_failed"]))
        yield from (live, viewers, recording, failed)
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


def exposition(service: EdgeService) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))
    return generate_latest(registry)
