"""DTLS for every viewer: the role we take and the cipher suites and SRTP profiles we
offer, chosen rather than inherited from aiortc.

Role: to an offer of `actpass` (every browser's, webrtcbin's, aiortc's) we answer
`active` and are the DTLS client, as RFC 8829 (JSEP) 5.3.1 says an answerer should and
as aiortc does; to `active` we answer `passive`, to `passive` `active`. The handshake
starts only once ICE has a validated pair, from our side, to that pair.

Suites: as the client the *peer's* certificate decides the suite, and WebRTC stacks use
either ECDSA (browsers, aiortc, Janus) or RSA (GStreamer's webrtcbin: RSA-2048). aiortc
1.16 offers ECDSA suites only (an RSA server finds "no shared cipher") and still offers
CBC/SHA-1 ones. We offer ECDHE with AES-GCM only (OWASP ASVS 5.0 17.2.2), for both
certificate types, AES-128 first (Mozilla's "intermediate" order without ChaCha20),
DTLS 1.2 at least (AES-GCM for a DTLS 1.3 too); as the server (to a peer that offered
`active`) our certificate (ECDSA P-256) and our order decide.

SRTP: AEAD_AES_256_GCM, AEAD_AES_128_GCM, then AES128_CM_SHA1_80 for peers without GCM
(RFC 7714, RFC 5764). OpenSSL's DTLS server picks its own first profile the client also
offers, so GCM is used whenever both sides have it and we are the server; as the client
we offer GCM first and the peer's server picks.

aiortc builds the SSL context in `RTCCertificate._create_ssl_context(srtp_profiles)`
(private; called by `RTCDtlsTransport.start`): `harden()` wraps it, and
tests/test_dtls.py guards it against the pinned aiortc.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiortc import rtcdtlstransport
from aiortc.rtcdtlstransport import RTCCertificate, SRTPProtectionProfile
from OpenSSL import SSL

logger = logging.getLogger(__name__)

CIPHER_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
)
"""OpenSSL names, in our order of preference: ECDHE key exchange, AES-GCM only."""

TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")
"""Should a DTLS 1.3 ever be negotiated (today's OpenSSL has none): AES-GCM there too."""

SRTP_PROFILES = ("SRTP_AEAD_AES_256_GCM", "SRTP_AEAD_AES_128_GCM", "SRTP_AES128_CM_SHA1_80")
"""In our order of preference; aiortc leaves out GCM when its libsrtp lacks it."""

DTLS1_2_VERSION = 0xFEFD  # RFC 6347; pyOpenSSL names no DTLS versions

_original_context = RTCCertificate._create_ssl_context


def approved_profiles(offered: Sequence[SRTPProtectionProfile]) -> list[SRTPProtectionProfile]:
    """aiortc's usable profiles, restricted to ours and put in our order."""
    by_name = {p.openssl_profile.decode("ascii"): p for p in offered}
    return [by_name[name] for name in SRTP_PROFILES if name in by_name]


def _context(self: RTCCertificate, srtp_profiles: list[SRTPProtectionProfile]) -> SSL.Context:
    profiles = approved_profiles(srtp_profiles)
    if not profiles:
        raise ValueError("no approved SRTP protection profile is available")
    context = _original_context(self, profiles)
    context.set_min_proto_version(DTLS1_2_VERSION)
    context.set_cipher_list(":".join(CIPHER_SUITES).encode("ascii"))
    context.set_tls13_ciphersuites(":".join(TLS13_SUITES).encode("ascii"))
    context.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
    return context


def harden(on: bool = True) -> None:
    """Process-wide: every DTLS transport aiortc starts from now on uses our suites and
    profiles (`on=False` restores aiortc's own)."""
    if on:
        missing = [p for p in SRTP_PROFILES if p not in _available_profiles()]
        if missing:
            logger.warning("libsrtp lacks %s: fewer SRTP profiles offered", ", ".join(missing))
        RTCCertificate._create_ssl_context = _context  # type: ignore[method-assign]
    else:
        RTCCertificate._create_ssl_context = _original_context  # type: ignore[method-assign]


def _available_profiles() -> list[str]:
    return [p.openssl_profile.decode("ascii") for p in rtcdtlstransport.SRTP_PROFILES]
