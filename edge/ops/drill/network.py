"""The network checks: each configured STUN/TURN URL answers (a STUN Binding, or a TURN
Allocate that must ask for credentials), and with `[webrtc.turn]` each TURN URL allocates
a relay with credentials minted from the shared secret, as a pupil's browser would."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Sequence
from typing import Any

import aioice.stun
import aioice.turn
from aioice import stun
from aiortc.rtcicetransport import parse_stun_turn_uri

from edge.config.settings import Config, IceServerSettings
from edge.live.service import turn_rest

from .report import Step

STUN_TIMEOUT = 2.0


async def _stun_exchange(
    request: stun.Message, host: str, port: int, transport: str, within: float
) -> stun.Message:
    """Send `request` and return the answer with its transaction id."""
    data = bytes(request)
    loop = asyncio.get_running_loop()
    if transport == "udp":
        answered: asyncio.Future[bytes] = loop.create_future()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, datagram: bytes, addr: tuple[str | Any, int]) -> None:
                if datagram[8:20] == request.transaction_id and not answered.done():
                    answered.set_result(datagram)

            def error_received(self, exc: Exception) -> None:
                if not answered.done():
                    answered.set_exception(exc)

        udp, _ = await loop.create_datagram_endpoint(Receiver, remote_addr=(host, port))
        try:
            async with asyncio.timeout(within):
                wait = 0.25
                while True:  # retransmit, as STUN over UDP does
                    udp.sendto(data)
                    done, _ = await asyncio.wait({answered}, timeout=wait)
                    if done:
                        return stun.parse_message(answered.result())
                    wait *= 2
        finally:
            udp.close()
    context = ssl.create_default_context() if transport == "tls" else None
    async with asyncio.timeout(within):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if context else None
        )
        try:
            writer.write(data)
            await writer.drain()
            header = await reader.readexactly(20)
            body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
            return stun.parse_message(header + body)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()


async def check_ice_url(url: str, within: float = STUN_TIMEOUT) -> Step:
    """A STUN Binding request (STUN), or an Allocate without credentials that must get
    a 401 (TURN): either proves the server answers."""
    key = f"ice.{url}"
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        return Step(key, "fail", f"{url}: địa chỉ sai ({exc})", f"{url}: malformed ({exc})")
    scheme, host, port = parsed["scheme"], parsed["host"], int(parsed["port"])
    turn = scheme.startswith("turn")
    transport = "tls" if scheme in ("stuns", "turns") else parsed.get("transport") or "udp"
    kind = "TURN" if turn else "STUN"
    request = stun.Message(
        message_method=stun.Method.ALLOCATE if turn else stun.Method.BINDING,
        message_class=stun.Class.REQUEST,
    )
    if turn:
        request.attributes["REQUESTED-TRANSPORT"] = 0x11000000  # UDP (RFC 8656)
    value: dict[str, Any] = {"url": url, "host": host, "port": port, "transport": transport}
    started = time.monotonic()
    try:
        answer = await _stun_exchange(request, host, port, transport, within)
    except TimeoutError:
        return Step(
            key,
            "fail",
            f"{kind} {url}: không trả lời trong {within:g} giây",
            f"{kind} {url}: no answer within {within:g} s ({transport.upper()})",
            {**value, "error": "timeout"},
        )
    except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError) as exc:
        error = str(exc) or type(exc).__name__
        return Step(
            key,
            "fail",
            f"{kind} {url}: lỗi {error}",
            f"{kind} {url}: {error}",
            {**value, "error": error},
        )
    rtt = (time.monotonic() - started) * 1000
    value["rtt_ms"] = round(rtt, 1)
    code = answer.error_code
    value["answer"] = answer.message_class.name.lower()
    if not turn and answer.message_class == stun.Class.RESPONSE:
        mapped = answer.attributes.get("XOR-MAPPED-ADDRESS") or answer.attributes.get(
            "MAPPED-ADDRESS"
        )
        seen = f"{mapped[0]}:{mapped[1]}" if mapped else "?"
        value["mapped"] = seen
        return Step(
            key,
            "pass",
            f"STUN {url}: trả lời sau {rtt:.0f} ms (thấy máy này là {seen})",
            f"STUN {url}: answered in {rtt:.0f} ms (sees us as {seen})",
            value,
        )
    if turn and code == 401:
        return Step(
            key,
            "pass",
            f"TURN {url}: trả lời sau {rtt:.0f} ms (đòi mật khẩu, đúng như phải thế)",
            f"TURN {url}: answered in {rtt:.0f} ms (401: asks for credentials, as it should)",
            value,
        )
    if turn and answer.message_class == stun.Class.RESPONSE:
        return Step(
            key,
            "warn",
            f"TURN {url}: cấp relay mà không cần mật khẩu (máy chủ mở cho mọi người)",
            f"TURN {url}: allocated without credentials (an open relay)",
            value,
        )
    value["error_code"] = code
    return Step(
        key,
        "warn",
        f"{kind} {url}: trả lời với lỗi {code}",
        f"{kind} {url}: answered with error {code}",
        value,
    )


async def check_ice_servers(servers: Sequence[IceServerSettings]) -> list[Step]:
    """`check_ice_url` of every configured URL, at once (none: a school LAN, passes)."""
    urls = [url for server in servers for url in server.urls]
    if not urls:
        return [
            Step(
                "ice",
                "pass",
                "STUN/TURN: không cấu hình (mạng nội bộ trường)",
                "STUN/TURN: none configured (school LAN)",
                {"urls": []},
            )
        ]
    return list(await asyncio.gather(*(check_ice_url(url) for url in urls)))


async def check_turn_credentials(config: Config) -> list[Step]:
    """With [webrtc.turn]: each URL answers an Allocate with credentials minted from the
    shared secret, as a pupil's browser would (a wrong secret fails here, not in class)."""
    settings = config.site.webrtc.turn
    if settings is None:
        return []
    try:
        minted = turn_rest(config)
    except OSError as exc:
        return [
            Step(
                "turn.secret",
                "fail",
                f"TURN: không đọc được tệp khóa bí mật {settings.secret_file} ({exc})",
                f"TURN: cannot read the secret file {settings.secret_file} ({exc})",
            )
        ]
    assert minted is not None
    server = minted.mint("drill")
    return list(
        await asyncio.gather(
            *(check_turn_allocation(url, server.username, server.credential) for url in server.urls)
        )
    )


async def check_turn_allocation(
    url: str, username: str | None, password: str | None, within: float = 5.0
) -> Step:
    """A relay allocated on TURN `url` with these credentials, within `within` seconds."""
    key = f"turn.{url}"
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError as exc:
        return Step(key, "fail", f"{url}: địa chỉ sai ({exc})", f"{url}: malformed ({exc})")
    transport = "tcp" if parsed["scheme"] == "turns" else parsed.get("transport") or "udp"
    value: dict[str, Any] = {"url": url, "transport": transport}
    started = time.monotonic()
    try:
        async with asyncio.timeout(within):
            relay, _ = await aioice.turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                (str(parsed["host"]), int(parsed["port"])),
                username,
                password,
                ssl=parsed["scheme"] == "turns",
                transport=transport,
            )
    except (TimeoutError, OSError, ssl.SSLError, ValueError, aioice.stun.TransactionError) as exc:
        error = str(exc) or type(exc).__name__
        hint = " (sai khóa bí mật?)" if "401" in error else ""
        return Step(
            key,
            "fail",
            f"TURN {url}: không cấp được địa chỉ chuyển tiếp với mật khẩu tạm thời{hint}: {error}",
            f"TURN {url}: no relay allocated with minted credentials"
            f"{' (wrong secret?)' if hint else ''}: {error}",
            {**value, "error": error},
        )
    address = relay.get_extra_info("sockname")
    relay.close()
    value.update(relay=str(address), ms=round((time.monotonic() - started) * 1000, 1))
    return Step(
        key,
        "pass",
        f"TURN {url}: cấp địa chỉ chuyển tiếp {address} với mật khẩu tạm thời "
        f"({value['ms']:.0f} ms)",
        f"TURN {url}: relay {address} allocated with minted credentials ({value['ms']:.0f} ms)",
        value,
    )
