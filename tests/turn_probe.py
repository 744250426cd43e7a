"""Debian coturn for the tests, and a Chromium probe that may only use TURN.

`coturn(tmp, secret)` runs `turnserver` on 127.0.0.1 with `use-auth-secret` (UDP/TCP on
one port, TLS on another with a self-signed certificate).

    python tests/turn_probe.py URL RESULT.json [SECONDS]

opens a join link in Chromium with every RTCPeerConnection forced to
`iceTransportPolicy: "relay"` and reports the page's state and text, the nominated
candidate pair (types, the relay's protocol), frames decoded and ICE candidate errors;
it stops once the lesson plays or the page gives up on its attempt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TURNSERVER = "/usr/bin/turnserver"
REALM = "classroom.test"


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _both_free() -> int:
    """A port free for TCP and UDP alike (TURN listens on both)."""
    for _ in range(50):
        port = _free_port(socket.SOCK_STREAM)
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no port free for both TCP and UDP")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "turn.classroom.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "turn-cert.pem", directory / "turn-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Turn:
    """A running coturn: `port` (UDP and TCP), `tls_port`, its `log`."""

    process: subprocess.Popen[bytes]
    port: int
    tls_port: int
    log: Path

    def url(self, transport: str = "udp") -> str:
        if transport == "tls":
            return f"turns:127.0.0.1:{self.tls_port}?transport=tcp"
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    def allocations(self) -> int:
        """Allocations coturn has logged as created so far."""
        return self.log.read_text(errors="replace").count("ALLOCATE processed, success")


@contextlib.contextmanager
def coturn(tmp: Path, secret: str, relay_ports: tuple[int, int] = (49160, 49359)) -> Iterator[Turn]:
    """`turnserver` on 127.0.0.1 with `use-auth-secret` and `static-auth-secret=secret`."""
    assert shutil.which(TURNSERVER), "Debian coturn missing (see README test command)"
    port, tls_port = _both_free(), _both_free()
    cert, key = self_signed(tmp)
    log = tmp / "turnserver.log"
    conf = tmp / "turnserver.conf"
    conf.write_text(
        "\n".join(
            [
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={port}",
                f"tls-listening-port={tls_port}",
                "use-auth-secret",
                f"static-auth-secret={secret}",
                f"realm={REALM}",
                f"cert={cert}",
                f"pkey={key}",
                "allow-loopback-peers",
                "no-cli",
                "no-dtls",
                "fingerprint",
                f"min-port={relay_ports[0]}",
                f"max-port={relay_ports[1]}",
                "simple-log",
                "verbose",
                f"log-file={log}",
                f"pidfile={tmp / 'turnserver.pid'}",
                f"userdb={tmp / 'turndb.sqlite'}",
                "",
            ]
        )
    )
    process = subprocess.Popen(
        [TURNSERVER, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while not _listening(port) or not _listening(tls_port):
            if process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"turnserver did not start: {text[-2000:]}")
            time.sleep(0.1)
        yield Turn(process, port, tls_port, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# Every peer connection the page makes may only use relayed candidates.
RELAY_ONLY = """
(() => {
  const Native = window.RTCPeerConnection;
  window.iceErrors = [];
  window.RTCPeerConnection = function (config, ...rest) {
    const pc = new Native({...(config || {}), iceTransportPolicy: 'relay'}, ...rest);
    pc.addEventListener('icecandidateerror', (e) => window.iceErrors.push(
      {url: e.url, code: e.errorCode, text: e.errorText}));
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""

STATS = """
async () => {
  const c = window.classroom;
  const out = {state: c ? c.state : null, errors: window.iceErrors || [], pair: null,
               frames: {}, audioPackets: 0, servers: c && c.config ? c.config.ice_servers : null};
  if (!c || !c.pc) return out;
  out.connection = c.pc.connectionState;
  out.policy = c.pc.getConfiguration().iceTransportPolicy;
  const report = await c.pc.getStats();
  const byId = {};
  report.forEach((s) => { byId[s.id] = s; });
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.frames[s.mid || s.id] = s.framesDecoded || 0;
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioPackets = s.packetsReceived || 0;
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
      const local = byId[s.localCandidateId] || {}, remote = byId[s.remoteCandidateId] || {};
      out.pair = {local: local.candidateType, relayProtocol: local.relayProtocol,
                  localAddress: local.address, localPort: local.port,
                  remote: remote.candidateType, remoteAddress: remote.address,
                  remotePort: remote.port};
    }
  });
  return out;
}
"""


def main(url: str, result_path: str, seconds: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.browser_probe import chromium

    result: dict[str, object] = {"url": url}
    console: list[str] = []
    with chromium(locale="vi-VN") as context:
        context.add_init_script(RELAY_ONLY)
        page = context.new_page()
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        started = time.monotonic()
        page.goto(url, wait_until="domcontentloaded", timeout=15000)
        stats: dict[str, object] = {}
        states: list[str] = []
        while time.monotonic() - started < seconds:
            stats = page.evaluate(STATS)
            state = str(stats.get("state"))
            if not states or states[-1] != state:
                states.append(state)
                result[f"{state}_after"] = round(time.monotonic() - started, 2)
            frames = stats.get("frames")
            if isinstance(frames, dict) and frames and min(frames.values()) > 30:
                result["played_after"] = round(time.monotonic() - started, 2)
                break
            if state in ("reconnecting", "error"):  # the page gave up on this attempt
                break
            page.wait_for_timeout(250)
        result["stats"] = stats
        result["states"] = states
        result["text"] = page.inner_text("body")
    result["console"] = console
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 20)
