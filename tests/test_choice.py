"""Rendition choice: the ladder and the rate controller, replayed on a model link."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

from webrtc.choice import (
    LinkReport,
    PageReport,
    RateController,
    RemoteChoice,
    VideoLine,
    build_ladder,
)
from webrtc.lag import LoopLag


@dataclass(frozen=True)
class FakeBus:
    name: str
    nominal_bitrate: int


CAMERA_HIGH, CAMERA_LOW = FakeBus("camera/high", 1_200_000), FakeBus("camera/low", 250_000)
BOARD_HIGH, BOARD_STILLS = FakeBus("board/high", 500_000), FakeBus("board/stills", 50_000)
COSTS = [110_000, 400_000, 850_000, 1_600_000]  # on the wire, audio included


def test_ladder_takes_the_cheapest_upgrade_and_keeps_the_board() -> None:
    ladder = build_ladder(
        [
            VideoLine([CAMERA_HIGH, CAMERA_LOW], can_pause=True),  # type: ignore[list-item]
            VideoLine([BOARD_HIGH, BOARD_STILLS]),  # type: ignore[list-item]
        ]
    )
    assert ladder == [  # type: ignore[comparison-overlap]
        (None, BOARD_STILLS),
        (CAMERA_LOW, BOARD_STILLS),
        (CAMERA_LOW, BOARD_HIGH),
        (CAMERA_HIGH, BOARD_HIGH),
    ]


def test_ladder_of_one_line() -> None:
    ladder = build_ladder([VideoLine([CAMERA_HIGH, CAMERA_LOW])])  # type: ignore[list-item]
    assert ladder == [(CAMERA_LOW,), (CAMERA_HIGH,)]  # type: ignore[comparison-overlap]


@dataclass
class ModelLink:
    """A bottleneck: what is sent above `capacity` is lost; RTT grows with the excess."""

    capacity: float

    def report(self, now: float, sent_rate: float, interval: float = 0.5) -> LinkReport:
        loss = max(0.0, 1 - self.capacity / sent_rate) if sent_rate else 0.0
        rtt = 0.03 + (0.1 if loss else 0.0)
        return LinkReport(now, round(sent_rate * interval), interval, loss, rtt)


def replay(
    controller: RateController, link: ModelLink, start: float, seconds: float
) -> list[tuple[float, int]]:
    levels = []
    now = start
    while now < start + seconds:
        level = controller.level if controller.level >= 0 else len(COSTS) - 1
        paced = controller.pacing_rate(now)
        sent = COSTS[level] if paced is None else min(COSTS[level], paced)
        now += 0.5
        levels.append((now, controller.update(link.report(now, sent), COSTS)))
    return levels


def test_steps_down_fast_holds_and_climbs_back() -> None:
    controller = RateController(start_estimate=COSTS[-1] * 1.3)
    link = ModelLink(capacity=3_000_000)
    assert replay(controller, link, 0, 5)[-1][1] == 3  # a good link keeps the top level

    link.capacity = 450_000
    limited = replay(controller, link, 5, 40)
    reached_low = next(t for t, level in limited if level <= 1)
    assert reached_low - 5 <= 2.0, limited
    after = [level for t, level in limited if t >= reached_low]
    assert min(after) == 1, "never below what the link carries"
    probes = sum(1 for a, b in itertools.pairwise(after) if b > a)
    assert 1 <= probes <= 4, f"probes up cautiously, with a growing hold: {limited}"

    link.capacity = 3_000_000
    healed = replay(controller, link, 45, 40)
    back = next(t for t, level in healed if level == 3)
    assert back - 45 <= 30, healed
    assert all(level == 3 for t, level in healed if t > back)


def test_cap_holds_the_save_data_level() -> None:
    controller = RateController(start_estimate=COSTS[-1] * 1.3)
    link = ModelLink(capacity=3_000_000)
    now = 0.0
    for _ in range(40):
        now += 0.5
        level = controller.update(link.report(now, COSTS[max(controller.level, 0)]), COSTS, cap=1)
        assert level <= 1
    assert controller.level == 1
    climbed = [
        controller.update(link.report(now + 1 + i / 2, COSTS[controller.level]), COSTS)
        for i in range(30)
    ]
    assert climbed[-1] == 3


def test_camera_pauses_only_when_its_lowest_rendition_stays_congested() -> None:
    controller = RateController(start_estimate=COSTS[-1] * 1.3)
    link = ModelLink(capacity=3_000_000)
    replay(controller, link, 0, 5)

    link.capacity = 60_000  # a first report this bad must not pause the camera at once
    dip = replay(controller, link, 5, 1)
    assert [level for _, level in dip][-1] == 1, dip
    link.capacity = 450_000
    recovered = replay(controller, link, 6, 10)
    assert min(level for _, level in recovered) == 1, recovered

    link.capacity = 200_000  # camera low itself does not fit: after a while, stills only
    starved = replay(controller, link, 16, 10)
    paused_at = next(t for t, level in starved if level == 0)
    assert 3.0 <= paused_at - 16 <= 6.0, starved


@dataclass(frozen=True)
class PricedBus(FakeBus):
    """A bus whose wire cost is its nominal bitrate, plus audio's overhead."""

    rendition: str = ""

    def wire_bitrate(self) -> float:
        return self.nominal_bitrate * 1.05


def test_a_relay_viewer_is_chosen_for_by_what_its_page_measured() -> None:
    """The Janus relay's viewers: the same ladder and controller, fed by the page's own
    measures every 2 s; "save data" caps at once; heavy loss steps down at once, a clean
    link climbs back one level at a time after the hold."""
    camera = [PricedBus("camera/low", 250_000, "low"), PricedBus("camera/high", 1_200_000, "high")]
    board = [PricedBus("board/stills", 50_000, "stills"), PricedBus("board/high", 500_000, "high")]
    audio = PricedBus("mic", 40_000, "mic")
    now = [0.0]
    choice = RemoteChoice(
        [VideoLine(camera, can_pause=True), VideoLine(board)],  # type: ignore[arg-type]
        audio,  # type: ignore[arg-type]
        clock=lambda: now[0],
    )
    assert choice.describe()["video"] == ["high", "high"] and choice.level == 3
    assert choice.set_save_data(True) == (camera[0], board[0])  # type: ignore[comparison-overlap]
    assert choice.describe()["save_data"] is True
    saving = choice.level
    unsaved = choice.set_save_data(False)  # up only as the link proves it
    assert unsaved == (camera[0], board[0])  # type: ignore[comparison-overlap]

    def report(loss: float, rate: float = 1_900_000) -> int:
        now[0] += 2.0
        packets = 1000
        lost = round(packets * loss / (1 - loss))
        choice.report(PageReport(2.0, int(rate * 2 / 8), packets, lost, 0.03))
        return choice.level

    assert [report(0.0) for _ in range(10)][-1] == 3 > saving
    assert report(0.3, rate=600_000) < 3  # 30 % lost: down at once
    lowered = choice.level
    assert choice.describe()["poor"] is True
    climbed = [report(0.0) for _ in range(15)]  # 30 s clean
    assert climbed[-1] == 3 and climbed[0] == lowered, climbed
    steps = [b - a for a, b in itertools.pairwise([lowered, *climbed])]
    assert all(step in (0, 1) for step in steps), climbed  # one level at a time


def test_our_own_loop_running_late_is_not_the_pupils_queue() -> None:
    """A receiver report read 400 ms late by a busy event loop: the round trip aiortc
    computes grows by as much. Taken as the pupil's queue it would step them down; the
    loop's own lateness is taken off first."""

    def run(server_lag: float) -> int:
        controller = RateController(start_estimate=2_000_000)
        level = 0
        for tick in range(40):
            late = 0.4 if tick >= 20 else 0.0  # the loop falls behind at 10 s
            rtt = 0.03 + late
            report = LinkReport(tick * 0.5, 800_000, 0.5, 0.0, rtt, None, late * server_lag)
            level = controller.update(report, COSTS)
        return level

    assert run(server_lag=1.0) == 3  # the lateness is known: nothing changes
    assert run(server_lag=0.0) < 3  # unknown: it reads as a queue on the link


async def test_the_loop_lag_ticker_sees_the_loop_blocked() -> None:
    lag = LoopLag()
    await lag.start()
    try:
        await asyncio.sleep(0.2)
        assert lag.recent(1.0) < 0.1
        # what blocking work on the loop (a hash, a report) does to everyone on it
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)
        await asyncio.sleep(0.45)
        assert 0.2 <= lag.recent(1.0) < 1.0, lag.recent(1.0)
    finally:
        await lag.stop()
