"""The pupil opens a join link before the bell: the waiting room, then the lesson.

Run inside the viewer's network namespace (tests/test_waiting_room.py does):
    python tests/waiting_probe.py JOIN_URL WHEP_URL TOKEN RESULT.json SCREENSHOT.png

1. A plain POST to the WHEP URL: the 409, its school clock (`now`) and Retry-After give
   the bell's moment on this machine's monotonic clock, independently of the page.
2. A phone whose clock is three days behind the school's opens the link: what its
   waiting room says (the day of the next lesson must still be "hôm nay").
3. The pupil's phone opens the link: the waiting room (state, #lesson-info, #countdown
   sampled for a few seconds, #overlay-detail, a screenshot), then, without a reload,
   the moment the page goes live and the moment its camera <video> has decoded more
   than 10 frames (getStats on the receiver that feeds #camera).

All times in the result are seconds from the bell (negative: before it).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import Request, Response

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser_probe import chromium

BELL = dt.datetime.fromisoformat("2026-11-25T07:00:00+07:00")
PHONE_BEHIND = dt.timedelta(days=3)
LIVE_WITHIN = 30.0  # seconds after the bell
FRAMES_WITHIN = 45.0

# What the waiting room shows; texts with runs of white space (and no-break spaces) as one space.
PAGE = """
() => {
  const text = (id) => {
    const el = document.getElementById(id);
    return el ? el.textContent.replace(/\\s+/g, ' ').trim() : null;
  };
  const shown = (id) => { const el = document.getElementById(id); return !!el && !el.hidden; };
  const c = window.classroom;
  return {
    state: c ? c.state : null, bodyState: document.body.getAttribute('data-state'),
    stateText: text('state-text'), overlayTitle: text('overlay-title'),
    lessonInfo: text('lesson-info'), lessonInfoShown: shown('lesson-info'),
    countdown: text('countdown'), countdownShown: shown('countdown'),
    detail: text('overlay-detail'), overlayShown: shown('overlay'), retryShown: shown('retry'),
    sameDocument: window.sameDocument === true, phoneNow: Date.now(),
  };
}
"""

# Frames decoded on the receiver whose track plays in the camera <video>.
CAMERA = """
async () => {
  const c = window.classroom;
  const v = document.getElementById('camera');
  const track = v && v.srcObject ? v.srcObject.getVideoTracks()[0] : null;
  if (!c || !c.pc || !track) return {state: c ? c.state : null, framesDecoded: 0};
  const t = c.pc.getTransceivers().find((x) => x.receiver.track === track);
  if (!t) return {state: c.state, framesDecoded: 0};
  const out = {state: c.state, connection: c.pc.connectionState, mid: t.mid, framesDecoded: 0,
               width: 0, height: 0, videoWidth: v.videoWidth, videoHeight: v.videoHeight};
  (await t.receiver.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      Object.assign(out, {framesDecoded: s.framesDecoded || 0, width: s.frameWidth || 0,
                          height: s.frameHeight || 0});
    }
  });
  return out;
}
"""

# A phone whose clock is off: Date.now() and `new Date()` read `shift` ms from the truth.
SHIFT_CLOCK = """
(() => {
  const shift = %d;
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  class PhoneDate extends RealDate {
    constructor(...args) {
      if (args.length) super(...args); else super(realNow() + shift);
    }
    static now() { return realNow() + shift; }
  }
  window.Date = PhoneDate;
})();
"""


def ask_whep(whep: str, token: str) -> dict[str, Any]:
    """POST a (meaningless) offer before the bell: the 409 problem and when it came."""
    request = urllib.request.Request(
        whep,
        data=b"v=0\r\n",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, body = error.code, error.headers, error.read()
    received, wall = time.monotonic(), time.time()
    problem = json.loads(body) if status == 409 else {}
    school_now = dt.datetime.fromisoformat(problem["now"]) if problem.get("now") else None
    return {
        "status": status,
        "retry_after": headers.get("Retry-After"),
        "problem": problem,
        "received": received,
        "wall": wall,
        "to_bell": (BELL - school_now).total_seconds() if school_now else None,
    }


def main(url: str, whep: str, token: str, result_path: str, screenshot: str) -> None:
    result: dict[str, Any] = {"url": url}
    asked = result["asked"] = ask_whep(whep, token)
    assert asked["status"] == 409 and asked["to_bell"] is not None, asked
    bell: float = asked["received"] + asked["to_bell"]  # the bell on this machine's monotonic clock

    def since_bell() -> float:
        return round(time.monotonic() - bell, 2)

    # the phone's clock, three days behind the school's: Date.now() + shift = school - 3 days
    school_minus_real = (BELL.timestamp() - asked["to_bell"]) - asked["wall"]
    shift_ms = round((school_minus_real - PHONE_BEHIND.total_seconds()) * 1000)
    console: list[str] = []
    with chromium(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh",
    ) as context:
        other = context.new_page()
        other.add_init_script(SHIFT_CLOCK % shift_ms)
        other.on("pageerror", lambda e: console.append(f"pageerror (phone behind): {e}"))
        other.on("console", lambda m: console.append(f"{m.type} (phone behind): {m.text}"))
        other.on("requestfailed", lambda r: console.append(f"failed: {r.method} {r.url}"))
        other.goto(url, wait_until="domcontentloaded", timeout=15000)
        try:
            other.wait_for_function(
                "() => window.classroom && window.classroom.state !== 'connecting'"
            )
        except Exception:  # say what the page was doing, then fail
            state = other.evaluate("window.classroom && window.classroom.state")
            print(json.dumps({"state": state, "console": console}), file=sys.stderr)
            raise
        result["phone_behind"] = {**other.evaluate(PAGE), "at": since_bell()}
        other.close()

        page = context.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        posts: dict[Request, dict[str, Any]] = {}  # the page's WHEP POSTs, by when they left

        def sent(request: Request) -> None:
            if request.method == "POST" and "/whep/" in request.url:
                posts[request] = {"at": since_bell(), "status": None, "answered_at": None}

        def answered(response: Response) -> None:
            if response.request in posts:
                posts[response.request].update(
                    status=response.status,
                    retry_after=response.headers.get("retry-after"),
                    answered_at=since_bell(),
                )

        page.on("request", sent)
        page.on("response", answered)
        navigations: list[str] = []
        page.on(
            "framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None
        )
        result["opened_at"] = since_bell()
        page.goto(url, wait_until="domcontentloaded", timeout=15000)
        page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloads
        page.wait_for_function("() => window.classroom && window.classroom.state !== 'connecting'")
        result["waiting_at"] = since_bell()

        samples: list[dict[str, Any]] = []  # the countdown, twice a second for 3 s
        for _ in range(7):
            samples.append({**page.evaluate(PAGE), "at": since_bell()})
            page.wait_for_timeout(500)
        result["waiting"] = samples
        page.screenshot(path=screenshot)

        live_at: float | None = None
        camera: dict[str, Any] = {}
        frames_at: float | None = None
        last: dict[str, Any] = {}
        while since_bell() < FRAMES_WITHIN:
            if live_at is None:
                last = page.evaluate(PAGE)
                if last["state"] == "live":
                    live_at = since_bell()
                    result["live"] = last
                elif since_bell() > LIVE_WITHIN:
                    break
            else:
                camera = page.evaluate(CAMERA)
                if camera["framesDecoded"] > 10:
                    frames_at = since_bell()
                    break
            page.wait_for_timeout(100)
        result["last"] = last
        result["live_at"] = live_at
        result["frames_at"] = frames_at
        result["camera"] = camera
        result["after"] = page.evaluate(PAGE)
        result["posts"] = list(posts.values())
        result["navigations"] = navigations
    result["console"] = console
    with open(result_path, "w", encoding="utf-8") as out:
        json.dump(result, out, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:6])
