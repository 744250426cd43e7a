"""Rendition choice per viewer: a ladder of levels and a link-rate controller.

A level picks one rendition (or none) for each video line of a viewer; audio is in
every level. The controller turns what the viewer's receiver reports tell (loss, and
round-trip time growing over its floor as a queue builds, less our own event loop's
lateness) into an estimate of what the link carries and picks the best level that
fits: down at once on heavy loss or a growing delay, up only after a hold time, one
level at a time, and a level that fails soon after a step up doubles the hold.

REMB is not used to decide: the receivers' estimators start far below the real rate
and aiortc's stays at about half of it on a clean loopback (measured), so it would
hold good links down. Sessions report it for diagnosis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .bus import PacketBus


@dataclass(frozen=True)
class VideoLine:
    """The renditions one video m-line may carry, best first; a line that `can_pause`
    is switched off on the worst links (the camera), the others never are (the board)."""

    renditions: Sequence[PacketBus]
    can_pause: bool = False


Level = tuple[PacketBus | None, ...]
"""One bus (or None: paused) per video line."""


def build_ladder(lines: Sequence[VideoLine]) -> list[Level]:
    """Levels from cheapest to best. Start with paused lines off and the others at their
    cheapest rendition, then take the cheapest upgrade of any line until all are best."""
    options = [sorted(line.renditions, key=lambda b: b.nominal_bitrate) for line in lines]
    position = [-1 if line.can_pause else 0 for line in lines]
    position = [p if options[i] else -1 for i, p in enumerate(position)]

    def level() -> Level:
        return tuple(options[i][p] if p >= 0 else None for i, p in enumerate(position))

    ladder = [level()]
    while True:
        upgrades = [
            (
                options[i][p + 1].nominal_bitrate
                - (options[i][p].nominal_bitrate if p >= 0 else 0),
                i,
            )
            for i, p in enumerate(position)
            if p + 1 < len(options[i])
        ]
        if not upgrades:
            return ladder
        _, line = min(upgrades)
        position[line] += 1
        ladder.append(level())


@dataclass
class LinkReport:
    """What one tick (about half a second) of a viewer's session showed."""

    now: float
    sent_bits: int  # on the wire, media and retransmissions, since the last report
    interval: float  # seconds covered by `sent_bits`
    loss: float | None = None  # fraction lost in fresh receiver reports, None if none came
    rtt: float | None = None  # seconds, smoothed, None if unknown
    delivered: float | None = None  # bits/s that got through in those reports, if known
    server_lag: float = 0.0  # seconds our own event loop ran late lately: not the link's


@dataclass
class RateController:
    """Estimates a viewer's link rate, picks a level of `costs` (bits/s per level) and
    the rate its video is paced at.

    Down: on heavy loss or a growing delay the estimate falls to what the receiver
    reports say got through, less half the loss (without that measure: to what was sent
    less the loss, at least 30 % of it), once per `settle` as reports lag behind what is
    sent now; a sudden heavy loss goes straight to level 1, and level 0 is reached only
    when level 1 stays congested for `last_resort_after`. Up: after a hold without
    congestion, one level at a time; the level's rate is ramped in by the pacer from
    what was sent before, so the probe overshoots the link only a little, and
    `probe_loss` on probation takes the level back and doubles the hold.

    Times come from the reports (an injectable clock), so tests replay minutes in
    microseconds.
    """

    start_estimate: float
    floor: float = 64_000.0
    ceiling: float = 20_000_000.0
    headroom: float = 0.92  # a level to step up to must fit in this share of the estimate
    heavy_loss: float = 0.10
    light_loss: float = 0.02
    rtt_margin: float = 0.2  # seconds over the lowest RTT seen that mean a queue builds
    growth_per_second: float = 0.25
    settle: float = 1.0  # seconds after a decrease before the next one
    hold_base: float = 4.0
    hold_max: float = 8.0
    probation: float = 5.0  # a step up that fails within this long doubles the hold
    ramp_per_second: float = 0.15  # of the rate before a step up, added while on probation
    probe_loss: float = 0.05  # loss that fails a step up on probation
    last_resort_after: float = 3.0  # seconds congested on level 1 before level 0 is used
    estimate: float = field(init=False)
    level: int = field(init=False, default=-1)
    hold: float = field(init=False)
    congested_at: float = field(init=False, default=-math.inf)
    decreased_at: float = field(init=False, default=-math.inf)
    stepped_up_at: float = field(init=False, default=-math.inf)
    changed_at: float = field(init=False, default=-math.inf)
    sending: float = field(init=False, default=0.0)  # bits/s sent, smoothed
    sending_before_step: float = field(init=False, default=0.0)
    proven: float = field(init=False, default=math.inf)  # bits/s the link carried; pace at it
    congested_since: float | None = field(init=False, default=None)  # None: last report clean
    min_rtt: float = field(init=False, default=math.inf)
    last_loss: float = field(init=False, default=0.0)
    poor: bool = field(init=False, default=False)
    reason: str = field(init=False, default="")  # why the estimate last fell

    def __post_init__(self) -> None:
        self.estimate = self.start_estimate
        self.hold = self.hold_base

    def _congested(self, report: LinkReport) -> tuple[bool, float]:
        """(congested, fraction of what was sent that got through)."""
        loss = report.loss or 0.0
        if report.loss is not None:
            self.last_loss = loss
        delivered_share = 1.0 - loss
        if report.loss is not None and loss >= self.heavy_loss:
            self.reason = f"loss {loss:.0%}"
            return True, delivered_share
        if report.rtt is not None:
            # a report read late by a busy loop reads as a longer round trip: not the link's
            rtt = max(report.rtt - report.server_lag, 0.0)
            self.min_rtt = min(self.min_rtt, rtt)
            if rtt > self.min_rtt + self.rtt_margin:
                self.reason = f"rtt {rtt * 1000:.0f} ms"
                return True, delivered_share * 0.9
        return False, delivered_share

    def on_probation(self, now: float) -> bool:
        return now - self.stepped_up_at < self.probation

    def update(self, report: LinkReport, costs: Sequence[float], cap: int | None = None) -> int:
        """Feed one report; returns the level to use now (an index into `costs`)."""
        now = report.now
        sent_rate = report.sent_bits / report.interval if report.interval > 0 else 0.0
        if report.interval > 0:
            self.sending += (sent_rate - self.sending) * min(1.0, report.interval)
        congested, delivered_share = self._congested(report)
        probing = self.on_probation(now)
        failed_probe = probing and report.loss is not None and report.loss >= self.probe_loss
        if congested or failed_probe:
            if self.congested_since is None:
                self.congested_since = now
        elif report.loss is not None:
            self.congested_since = None
        if failed_probe:
            # back to the level that held, and wait longer before the next probe
            self.reason = f"probe failed: loss {report.loss:.0%}"
            self.level = max(self.level - 1, 0)
            self.changed_at = now
            self.estimate = min(self.estimate, costs[self.level] / self.headroom * 1.001)
            self.hold = min(self.hold * 2, self.hold_max)
            self.stepped_up_at = -math.inf
            self.congested_at = self.decreased_at = now
        elif congested:
            if now - self.decreased_at >= self.settle:
                if report.delivered is not None:  # measured: what the link carried
                    loss = report.loss or 0.0
                    self.estimate = min(self.estimate, report.delivered * (1 - loss / 2))
                else:
                    delivered = sent_rate * delivered_share
                    self.estimate = min(self.estimate, max(delivered, sent_rate * 0.3))
                if self.congested_since == now and self.last_loss >= self.heavy_loss:
                    # a link that suddenly loses this much thinned by more than the first
                    # reports tell (they mix in what went before): to the lowest level
                    # with moving pictures at once, then probe up from there
                    lowest = costs[min(1, len(costs) - 1)]
                    self.estimate = min(self.estimate, lowest / self.headroom * 1.001)
                self.proven = min(self.proven, self.estimate)
                self.decreased_at = now
            self.congested_at = now
        elif (report.loss is None or report.loss < self.light_loss) and (
            now - self.congested_at >= self.hold
        ):
            self.estimate *= (1 + self.growth_per_second) ** report.interval
            if now - self.congested_at > 3 * self.hold_max:
                self.hold = self.hold_base  # long clean: be quick again next time
        if (
            not probing
            and self.stepped_up_at > -math.inf
            and now - self.stepped_up_at < self.probation + 1.0
        ):
            self.proven = max(self.proven, self.sending)  # the step up held
        self.estimate = min(max(self.estimate, self.floor), self.ceiling)
        self.poor = now - self.congested_at < 10.0 or self.last_loss >= self.light_loss

        fitting = [i for i, cost in enumerate(costs) if cost <= self.estimate * self.headroom]
        wanted = max(fitting, default=0)
        keep = 0 <= self.level < len(costs) and (cap is None or self.level <= cap)
        if keep and wanted < self.level and costs[self.level] <= self.estimate:
            wanted = self.level  # headroom is for going up; a level that fits stays
        if cap is not None:
            wanted = min(wanted, cap)
        if wanted == 0 and self.level > 0 and len(costs) > 1 and (cap is None or cap > 0):
            wanted = self._last_resort(now, costs)
        if self.level < 0 or wanted < self.level:
            self._set(wanted, now)
        elif (
            wanted > self.level
            and now - self.congested_at >= self.hold
            and now - self.changed_at >= self.probation
        ):
            self.sending_before_step = self.sending
            self._set(self.level + 1, now)  # one step at a time, each on probation
            self.stepped_up_at = now
        return self.level

    def pacing_rate(self, now: float) -> float | None:
        """Bits/s the viewer's video may leave at; None: unpaced. A link is paced once it
        showed congestion (a LAN takes a keyframe at once, so a joiner sees it at once):
        at what it proved to carry, and while a step up is on probation, ramped up from
        the rate before it towards the estimate. A keyframe that leaves faster than the
        link carries is lost in its queue, and estimates grow without proof."""
        if self.congested_at == -math.inf:
            return None
        rate = self.proven
        if self.on_probation(now):
            elapsed = now - self.stepped_up_at
            ramp = self.sending_before_step * (1 + self.ramp_per_second * elapsed)
            rate = max(rate, min(ramp, self.estimate))
        return max(min(rate, self.estimate), self.floor)

    def _last_resort(self, now: float, costs: Sequence[float]) -> int:
        """Level 0 (the camera paused) only when level 1 stayed congested for a while:
        the first reports after a link thins mix in what was sent before, and a short
        dip must not cost the pupils the teacher's picture for a hold and a probe."""
        began = math.inf if self.congested_since is None else self.congested_since
        since = max(self.changed_at, began)
        if self.level == 1 and now - since >= self.last_resort_after:
            return 0
        self.estimate = max(self.estimate, costs[1])
        self.proven = max(min(self.proven, self.estimate), costs[1])
        return 1

    def _set(self, level: int, now: float) -> None:
        self.level = level
        self.changed_at = now


def level_costs(ladder: Sequence[Level], audio_bitrate: float) -> list[float]:
    """Bits/s each level of `ladder` costs a viewer on the wire, audio included."""
    return [
        audio_bitrate + sum(bus.wire_bitrate() for bus in level if bus is not None)
        for level in ladder
    ]


def save_data_cap(ladder: Sequence[Level], lines: Sequence[VideoLine]) -> int:
    """The "save data" cap: the best level that keeps every line at its cheapest."""
    cheapest = [min(line.renditions, key=lambda b: b.nominal_bitrate) for line in lines]
    return max(
        i
        for i, level in enumerate(ladder)
        if all(bus is None or bus is low for bus, low in zip(level, cheapest, strict=True))
    )


@dataclass
class PageReport:
    """What a viewer's page measured of the media it received over `interval` seconds
    (`getStats`): bytes and video packets received, video packets lost, and the
    round-trip time of its candidate pair (None if it does not say)."""

    interval: float
    bytes: int
    packets: int
    lost: int
    rtt: float | None = None


class RemoteChoice:
    """The rendition choice of a viewer that another server sends to (the Janus relay,
    which forwards the substream each viewer asks for): the same ladder and controller as
    a session of ours, fed with what the viewer's page measured instead of receiver
    reports, and nothing to pace. `level` is the choice now; `clock` is injectable."""

    def __init__(
        self,
        lines: Sequence[VideoLine],
        audio: PacketBus | None,
        *,
        save_data: bool = False,
        clock: Callable[[], float],
    ) -> None:
        self.lines = list(lines)
        self.audio = audio
        self.save_data = save_data
        self._clock = clock
        self.ladder = build_ladder(self.lines)
        self.controller = RateController(start_estimate=self.costs()[-1] * 1.3)
        self.level = self.controller.update(LinkReport(clock(), 0, 0.0), self.costs(), self.cap)

    @property
    def cap(self) -> int | None:
        return save_data_cap(self.ladder, self.lines) if self.save_data else None

    def costs(self) -> list[float]:
        """Bits/s each level costs on the wire, audio included."""
        audio = self.audio.wire_bitrate() if self.audio is not None else 0.0
        return level_costs(self.ladder, audio)

    def chosen(self) -> Level:
        return self.ladder[self.level]

    def report(self, page: PageReport) -> Level:
        """Feed one page report; the level to use now."""
        received = page.packets + page.lost
        loss = page.lost / received if received > 0 else None
        delivered = page.bytes * 8 / page.interval if page.interval > 0 else None
        sent_bits = round(page.bytes * 8 * (1 + (loss or 0.0)))  # what left, lost included
        report = LinkReport(self._clock(), sent_bits, page.interval, loss, page.rtt, delivered)
        self.level = self.controller.update(report, self.costs(), self.cap)
        return self.chosen()

    def set_save_data(self, save_data: bool) -> Level:
        """The page's "save data" switch; takes effect at once."""
        self.save_data = save_data
        report = LinkReport(self._clock(), 0, 0.0)
        self.level = self.controller.update(report, self.costs(), self.cap)
        return self.chosen()

    def describe(self) -> dict[str, Any]:
        """What the viewer gets now, in the words of a session of ours (`describe()`)."""
        controller = self.controller
        return {
            "video": [None if bus is None else bus.rendition for bus in self.chosen()],
            "level": self.level,
            "levels": len(self.ladder),
            "save_data": self.save_data,
            "poor": controller.poor,
            "estimate_kbps": round(controller.estimate / 1000),
            "costs_kbps": [round(cost / 1000) for cost in self.costs()],
            "loss": round(controller.last_loss, 3),
            "reason": controller.reason,
        }
