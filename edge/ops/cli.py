"""`classroom-edge` command line."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import signal
import sys
import types
from pathlib import Path

from edge.config.settings import Config, ConfigError, load
from edge.live.logbook import SchoolTimeFormatter, stamp_in_school_time
from edge.ops.runlock import AlreadyRunning, RunLock
from edge.school.roster import RosterError

EXIT_CONFIG = 1
WEEKDAYS = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="site config (default /etc/classroom-edge/edge.toml, else the demo)",
    )
    parser.add_argument("--demo", action="store_true", help="use the embedded demo config")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="override the config's data_dir"
    )


def _load(args: argparse.Namespace) -> Config:
    config = load(args.config, demo=args.demo, data_dir=args.data_dir)
    stamp_in_school_time(config.zone)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from edge.access.connections import EdgeProtocol
    from edge.access.links import room_links
    from edge.live.service import EdgeService
    from edge.ops.notify import Notifier, service_status
    from edge.school.clock import SystemClock
    from edge.school.database import DatabaseTooNew
    from edge.web.app import create_app

    config = _load(args)
    lock = RunLock(config.site.data_dir)
    try:
        lock.acquire()  # before anything opens the data dir's files
    except AlreadyRunning as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    host = args.host or config.site.http.host
    port = args.port or config.site.http.port
    clock = SystemClock(args.clock)
    try:
        service = EdgeService(config, host=host, port=port, clock=clock)
    except DatabaseTooNew as exc:  # lessons.db migrated by a newer version: say so
        print(f"classroom-edge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    app = create_app(service)
    tls = config.site.http
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            http=EdgeProtocol,  # deadlines and caps for slow clients
            timeout_graceful_shutdown=3,  # the console's event streams never end by themselves
            ssl_certfile=str(tls.certificate) if tls.certificate else None,
            ssl_keyfile=str(tls.private_key) if tls.private_key else None,
            # X-Forwarded-For/-Proto only from the configured reverse proxies
            proxy_headers=bool(tls.trusted_proxies),
            forwarded_allow_ips=",".join(tls.trusted_proxies) or None,
        )
    )
    notifier = Notifier(lambda: service_status(service))  # systemd (does nothing outside it)

    def stop_serving(signum: int, frame: types.FrameType | None) -> None:
        server.handle_exit(signum, frame)

    # uvicorn handles SIGTERM/SIGINT while it serves, then restores these handlers and
    # raises the signal again: with ours in place the service ends with exit status 0
    # (a stop asked for is not a crash) and Ctrl-C prints no traceback
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, stop_serving)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.05)
        if server.started:
            await notifier.start()  # READY=1: the HTTP server listens
            print(
                f"classroom-edge: {config.site.school}: serving on {service.base_url}", flush=True
            )
            for room in config.rooms:
                class_link = room_links(
                    config, service.signer, service.roster, room, service.base_url
                )[0]
                print(
                    f"  room {room} (class {class_link.class_name}): {class_link.url}", flush=True
                )
            # STOPPING=1 goes out as soon as a stop is asked for, before the shutdown
            while not server.should_exit and not task.done():  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.1)
            await notifier.stop()  # STOPPING=1
        await task

    try:
        asyncio.run(serve())
    finally:
        lock.release()
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    where = config.path or "embedded demo"
    hub = config.site.school_hub
    if hub is not None:
        print(
            f"{where}: ok (school hub of {len(hub.rooms)} room(s): {', '.join(sorted(hub.rooms))})"
        )
    if config.rooms or hub is None:
        print(f"{where}: ok ({len(config.rooms)} room(s): {', '.join(sorted(config.rooms))})")
    return 0


def _known_room(config: Config, room: str) -> bool:
    if room in config.rooms:
        return True
    rooms = ", ".join(sorted(config.rooms))
    print(f"classroom-edge: no room {room!r} (rooms: {rooms})", file=sys.stderr)
    return False


def cmd_links(args: argparse.Namespace) -> int:
    from edge.access.links import open_roster, public_url, room_links, signer_for

    config = _load(args)
    if not _known_room(config, args.room):
        return 2
    roster = open_roster(config)
    try:
        if args.revoke:
            pupil = roster.revoke_pupil(args.revoke)
            if pupil is None or pupil.class_name != config.rooms[args.room].class_name:
                print(
                    f"classroom-edge: no pupil {args.revoke} in this room's class", file=sys.stderr
                )
                return 2
            print(f"the old link of {pupil.name} no longer works; the new one:", file=sys.stderr)
        if args.revoke_class:
            roster.revoke_class(config.rooms[args.room].class_name)
            print("the old class link no longer works; the new one:", file=sys.stderr)
        links = room_links(config, signer_for(config), roster, args.room, public_url(config))
    finally:
        roster.close()
    if args.revoke or args.revoke_class:
        links = [
            x
            for x in links
            if x.student_id == args.revoke or (args.revoke_class and x.kind == "class")
        ]
    if args.sheet is not None:
        from edge.web.sheet import render_sheet

        class_name = config.rooms[args.room].class_name
        args.sheet.write_text(render_sheet(config.site.school, class_name, links), encoding="utf-8")
        print(f"{args.sheet}: {len(links)} links to print", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps([link.as_json() for link in links], ensure_ascii=False, indent=2))
    else:
        for link in links:
            who = f"{link.name} ({link.student_id})" if link.name else f"cả lớp {link.class_name}"
            print(f"{who}\n  {link.url}")
    return 0


def cmd_roster(args: argparse.Namespace) -> int:
    from edge.access.links import open_roster
    from edge.school.roster import RosterError, read_roster

    config = _load(args)
    roster = open_roster(config)
    try:
        if args.action == "list":
            for pupil in roster.pupils(args.class_name):
                print(f"{pupil.class_name}\t{pupil.id}\t{pupil.name}")
            return 0
        if args.file is None:
            print("classroom-edge: roster import needs a CSV file", file=sys.stderr)
            return 2
        classes = {room.class_name for room in config.rooms.values()}
        try:
            pupils = read_roster(args.file, classes)
        except RosterError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print(
                f"{args.file}: nothing imported ({len(exc.problems)} problem(s))", file=sys.stderr
            )
            return 1
        result = roster.import_pupils(pupils, dt.datetime.now(dt.UTC))
    finally:
        roster.close()
    print(
        f"{args.file}: {len(pupils)} pupils of {', '.join(result.classes)}: {result.added} new, "
        f"{result.updated} changed, {result.left} left"
    )
    return 0


def cmd_timetable(args: argparse.Namespace) -> int:
    from edge.school.timetable import plan_day

    config = _load(args)
    if not _known_room(config, args.room):
        return 2
    room = config.rooms[args.room]
    day = args.date or dt.datetime.now(config.zone).date()
    planned = plan_day(
        config.timetables.get(args.room, []),
        day,
        class_name=room.class_name,
        timezone=config.zone,
        calendar=config.site.calendar.calendar(),
        excluded=config.excluded_subjects(args.room),
    )
    if args.json:
        print(json.dumps([p.as_json() for p in planned], ensure_ascii=False, indent=2))
        return 0
    weekday = WEEKDAYS[day.isoweekday() - 1]
    print(f"{args.room} (lớp {room.class_name}), {weekday} {day:%d/%m/%Y}:")
    if room.always_live:
        print("  phát liên tục (không theo thời khóa biểu)")
    if not planned:
        closed = config.site.calendar.calendar().closed_reason(day)
        print(f"  không có tiết nào{f' ({closed})' if closed else ''}")
    for p in planned:
        state = "phát trực tuyến" if p.streams else f"không phát: {p.reason}"
        print(
            f"  {p.start:%H:%M}–{p.end:%H:%M}  tiết {p.period.number} "
            f"{'sáng' if p.period.session == 'morning' else 'chiều'}  "
            f"{p.period.subject} ({p.period.teacher or '—'})  {state}"
        )
    return 0


def cmd_staff_key(args: argparse.Namespace) -> int:
    from edge.access.links import staff_key

    print(staff_key(_load(args)))
    return 0


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (expected YYYY-MM-DD)") from None


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"not a moment: {text!r} (expected e.g. 2026-11-25T07:58:00+07:00)"
        )
    return moment


def cmd_devices(args: argparse.Namespace) -> int:
    from edge.live.devices import discover, format_text

    inventory = discover()
    if args.json:
        print(json.dumps(inventory.as_json(), ensure_ascii=False, indent=2))
        for warning in inventory.warnings:
            print(f"classroom-edge: {warning}", file=sys.stderr)
    else:
        print(format_text(inventory), end="")
    return 0


def cmd_staff_password(args: argparse.Namespace) -> int:
    import getpass

    from edge.access.staff import set_password

    config = _load(args)
    if sys.stdin.isatty():
        password = getpass.getpass("New staff password: ")
        if getpass.getpass("Again: ") != password:
            print("classroom-edge: the two do not match; nothing changed", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        set_password(config.site.data_dir, password)
    except ValueError as exc:
        print(f"classroom-edge: {exc}", file=sys.stderr)
        return 1
    print("staff password set: log in at /login (the principal's reports, the console)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edge.access.links import open_roster
    from edge.school.attendance import AttendanceStore
    from edge.school.lessons import LessonStore
    from edge.school.reports import (
        Rules,
        day_and_week,
        render_csv,
        render_html,
        render_week_csv,
        render_xlsx,
    )

    config = _load(args)
    if args.room is not None and not _known_room(config, args.room):
        return 2
    if args.format == "xlsx" and args.output is None and sys.stdout.isatty():
        print(
            "classroom-edge: an XLSX goes to a file: add --output FILE (or > FILE)", file=sys.stderr
        )
        return 2
    data = config.site.data_dir / "lessons.db"
    lessons, attendance, roster = LessonStore(data), AttendanceStore(data), open_roster(config)
    site = config.site
    try:
        report, week = day_and_week(
            site.school,
            args.date,
            [args.room] if args.room else sorted(config.rooms),
            lessons=lessons,
            roster=roster,
            attendance=attendance,
            zone=config.zone,
            rules=Rules(site.attendance.present_share, site.attendance.late_minutes),
            now=dt.datetime.now(dt.UTC),
        )
    finally:
        for store in (lessons, attendance, roster):
            store.close()
    if args.format == "csv":
        body = render_week_csv(week) if args.week else render_csv(report, config.zone)
    elif args.format == "xlsx":
        body = render_xlsx(report, week, config.zone)
    else:
        body = render_html(report, week, config.zone).encode("utf-8")
    if args.output is not None:
        args.output.write_bytes(body)
        print(f"{args.output}: {len(report.periods)} period(s)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from edge.ops import archive_cli

    config = _load(args)
    if args.action == "status":
        return archive_cli.status(config, args.json)
    if args.action == "retry":
        return archive_cli.retry(config, args.lessons)
    return archive_cli.verify(config, args.lessons)


def _drill_seconds(text: str) -> int:
    from edge.ops.drill import MIN_SECONDS

    try:
        seconds = int(text)
    except ValueError:
        seconds = -1
    if seconds < MIN_SECONDS:
        raise argparse.ArgumentTypeError(f"not a drill length: {text!r} (expected ≥ {MIN_SECONDS})")
    return seconds


def cmd_drill(args: argparse.Namespace) -> int:
    from edge.ops import drill

    config = _load(args)
    if not _known_room(config, args.room):
        return 2
    logging.getLogger().setLevel(logging.WARNING)  # the report speaks; the service's log not
    return drill.main(config, args.room, seconds=args.seconds, output=args.output)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="classroom-edge", description="Live lessons for absent pupils"
    )
    commands = main.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the service")
    _common(run)
    run.add_argument(
        "--host", default=None, help="bind address; loopback = 127.0.0.1 candidates only"
    )
    run.add_argument("--port", type=int, default=None, help="TCP port")
    run.add_argument(
        "--clock",
        type=_moment,
        default=None,
        help="run the timetable clock from this moment (ISO 8601 with offset; drills, tests)",
    )
    run.set_defaults(func=cmd_run)
    check = commands.add_parser("check-config", help="validate the config and room files")
    _common(check)
    check.set_defaults(func=cmd_check_config)
    links = commands.add_parser("links", help="join links of a room")
    _common(links)
    links.add_argument("room")
    links.add_argument("--json", action="store_true")
    links.add_argument("--sheet", type=Path, default=None, help="write the printable sheet here")
    links.add_argument("--revoke", metavar="PUPIL_ID", help="revoke a pupil's link, print the new")
    links.add_argument("--revoke-class", action="store_true", help="revoke the class link")
    links.set_defaults(func=cmd_links)
    roster = commands.add_parser("roster", help="pupils: import a class list, list them")
    _common(roster)
    roster.add_argument("action", choices=("import", "list"))
    roster.add_argument("file", nargs="?", type=Path, help="CSV to import (Mã định danh, ...)")
    roster.add_argument("--class", dest="class_name", default=None, help="list one class")
    roster.set_defaults(func=cmd_roster)
    timetable = commands.add_parser("timetable", help="a room's periods of one day")
    _common(timetable)
    timetable.add_argument("room")
    timetable.add_argument("--date", type=_date, default=None, help="YYYY-MM-DD (default today)")
    timetable.add_argument("--json", action="store_true")
    timetable.set_defaults(func=cmd_timetable)
    staff = commands.add_parser("staff-key", help="the key for lesson control from afar")
    _common(staff)
    staff.set_defaults(func=cmd_staff_key)
    devices = commands.add_parser("devices", help="cameras, capture cards, microphones, displays")
    _common(devices)
    devices.add_argument(
        "--json", action="store_true", help="a list of objects: type, id, name, ..., config"
    )
    devices.set_defaults(func=cmd_devices)
    report = commands.add_parser("report", help="attendance of a day (CSV, XLSX, HTML)")
    _common(report)
    report.add_argument("--date", type=_date, required=True, help="YYYY-MM-DD")
    report.add_argument("--room", default=None, help="one room (default: all)")
    report.add_argument("--format", choices=("csv", "xlsx", "html"), default="csv")
    report.add_argument("--week", action="store_true", help="CSV: the week's summary instead")
    report.add_argument("--output", type=Path, default=None, help="write here (default: stdout)")
    report.set_defaults(func=cmd_report)
    password = commands.add_parser("staff-password", help="set the staff login's password")
    _common(password)
    password.set_defaults(func=cmd_staff_password)
    archive = commands.add_parser("archive", help="the archive queue: status, retry, verify")
    _common(archive)
    archive.add_argument("action", choices=("status", "retry", "verify"))
    archive.add_argument("lessons", nargs="*", default=[], help="lesson ids (default: all)")
    archive.add_argument("--json", action="store_true", help="status as JSON")
    archive.set_defaults(func=cmd_archive)
    drill = commands.add_parser("drill", help="the room self-test (yearly, and after a change)")
    _common(drill)
    drill.add_argument("room")
    drill.add_argument(
        "--seconds", type=_drill_seconds, default=60, help="mini-lesson length (default 60, ≥ 5)"
    )
    drill.add_argument(
        "--output",
        type=Path,
        default=None,
        help="report file or folder (default <data dir>/drills/ROOM-YYYY-MM-DD-HHMM.txt/.json)",
    )
    drill.set_defaults(func=cmd_drill)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(SchoolTimeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except (ConfigError, RosterError) as exc:  # FILE:LINE lines, never a traceback
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
