"""DTLS suites, SRTP profiles and roles (webrtc/dtls.py), and the aiortc 1.16 private hook
they sit in (`RTCCertificate._create_ssl_context`, called by `RTCDtlsTransport.start`).

Handshakes run in memory (pyOpenSSL memory BIOs, as aiortc drives them) against peers
built like the stacks in the wild: an RSA-2048 certificate with OpenSSL's default suites
and only AES128_CM_SHA1_80 (GStreamer 1.22's webrtcbin), ECDSA with GCM (browsers).
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Iterator

import pytest
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCSessionDescription
from aiortc import rtcdtlstransport as aiortc_dtls
from aiortc.rtcdtlstransport import RTCCertificate
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from OpenSSL import SSL

from tests.whep_client import eventually
from webrtc import dtls, gather_only

GSTREAMER_SRTP = b"SRTP_AES128_CM_SHA1_80:SRTP_AES128_CM_SHA1_32"
BROWSER_SRTP = b"SRTP_AEAD_AES_128_GCM:SRTP_AEAD_AES_256_GCM:SRTP_AES128_CM_SHA1_80"


@pytest.fixture
def hardened() -> Iterator[None]:
    dtls.harden()
    try:
        yield
    finally:
        dtls.harden(False)


def peer_context(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    ciphers: bytes = b"HIGH:!aNULL",
    srtp: bytes = GSTREAMER_SRTP,
) -> SSL.Context:
    """Another stack's DTLS context: its own certificate, its own suites and profiles."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "peer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    context = SSL.Context(SSL.DTLS_METHOD)
    context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
    context.use_certificate(cert)
    context.use_privatekey(key)
    context.set_cipher_list(ciphers)
    context.set_tlsext_use_srtp(srtp)
    return context


def ours() -> SSL.Context:
    """The context aiortc's `RTCDtlsTransport.start` builds for a viewer's transport."""
    return RTCCertificate.generateCertificate()._create_ssl_context(
        srtp_profiles=aiortc_dtls.SRTP_PROFILES
    )


def handshake(client_context: SSL.Context, server_context: SSL.Context) -> SSL.Connection:
    """Run a DTLS handshake in memory; the client's connection, once both are done."""
    client, server = SSL.Connection(client_context), SSL.Connection(server_context)
    client.set_connect_state()
    server.set_accept_state()
    done = {id(client): False, id(server): False}
    for _ in range(20):
        for me, other in ((client, server), (server, client)):
            if not done[id(me)]:
                try:
                    me.do_handshake()
                    done[id(me)] = True
                except SSL.WantReadError:
                    pass
            for _ in range(20):
                try:
                    other.bio_write(me.bio_read(65536))
                except SSL.WantReadError:
                    break
        if all(done.values()):
            return client
    raise AssertionError("handshake did not complete")


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_aiortc_builds_every_dtls_context_where_the_hook_sits() -> None:
    parameters = list(inspect.signature(RTCCertificate._create_ssl_context).parameters)
    assert parameters == ["self", "srtp_profiles"]
    source = inspect.getsource(RTCDtlsTransport.start)
    assert "self.__local_certificate._create_ssl_context(" in source
    assert "srtp_profiles=self._srtp_profiles" in source
    assert "self._srtp_profiles = SRTP_PROFILES" in inspect.getsource(RTCDtlsTransport.__init__)
    # the pinned aiortc's own list: ECDSA only, CBC/SHA-1 too (what the hook replaces)
    plain = SSL.Connection(ours()).get_cipher_list()
    assert plain[-4:] == [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
    ]
    # libsrtp of the pinned pylibsrtp has GCM: all three profiles are available
    assert [p.openssl_profile.decode() for p in aiortc_dtls.SRTP_PROFILES] == list(
        dtls.SRTP_PROFILES
    )


def test_harden_installs_and_restores() -> None:
    original = RTCCertificate._create_ssl_context
    dtls.harden()
    try:
        assert RTCCertificate._create_ssl_context is not original
        assert SSL.Connection(ours()).get_cipher_list() == [*dtls.TLS13_SUITES, *dtls.CIPHER_SUITES]
    finally:
        dtls.harden(False)
    assert RTCCertificate._create_ssl_context is original


def test_aiortc_alone_finds_no_shared_cipher_with_an_rsa_server() -> None:
    """The bug GStreamer players hit: aiortc as DTLS client, webrtcbin's RSA certificate."""
    with pytest.raises(SSL.Error, match=r"no shared cipher"):
        handshake(ours(), peer_context(rsa_key()))


@pytest.mark.usefixtures("hardened")
def test_we_offer_only_ecdhe_with_aes_gcm() -> None:
    offered = SSL.Connection(ours()).get_cipher_list()
    assert offered == [*dtls.TLS13_SUITES, *dtls.CIPHER_SUITES]  # OpenSSL lists TLS 1.3's first
    assert all(s.startswith("ECDHE-") and "-GCM-" in s for s in dtls.CIPHER_SUITES)
    assert all(s.startswith("TLS_AES_") and "_GCM_" in s for s in dtls.TLS13_SUITES)


@pytest.mark.usefixtures("hardened")
@pytest.mark.parametrize("key", ["rsa", "ecdsa"])
def test_as_client_we_play_with_either_certificate_type(key: str) -> None:
    peer_key = rsa_key() if key == "rsa" else ec.generate_private_key(ec.SECP256R1())
    client = handshake(ours(), peer_context(peer_key))
    assert client.get_cipher_name() in dtls.CIPHER_SUITES
    assert f"ECDHE-{'RSA' if key == 'rsa' else 'ECDSA'}-AES" in str(client.get_cipher_name())
    assert client.get_protocol_version_name() == "DTLSv1.2"
    assert client.get_selected_srtp_profile() == b"SRTP_AES128_CM_SHA1_80"


@pytest.mark.usefixtures("hardened")
def test_as_server_our_certificate_and_order_choose_and_gcm_wins() -> None:
    peer = peer_context(rsa_key(), srtp=BROWSER_SRTP)  # an RSA client that has GCM
    client = handshake(peer, ours())
    assert client.get_cipher_name() == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert client.get_selected_srtp_profile() == b"SRTP_AEAD_AES_256_GCM"
    # a client without GCM profiles gets AES128_CM_SHA1_80
    client = handshake(peer_context(rsa_key()), ours())
    assert client.get_selected_srtp_profile() == b"SRTP_AES128_CM_SHA1_80"


@pytest.mark.usefixtures("hardened")
def test_cbc_and_sha1_suites_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for legacy in (b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA", b"ECDHE-RSA-AES128-SHA256"):
        with pytest.raises(SSL.Error):
            handshake(peer_context(key, ciphers=legacy), ours())
        with pytest.raises(SSL.Error):
            handshake(ours(), peer_context(key, ciphers=legacy))


@pytest.mark.parametrize(("offered", "answered"), [
    ("actpass", "active"), ("active", "passive"), ("passive", "active"),
])  # fmt: skip
async def test_the_answer_takes_the_role_we_chose(offered: str, answered: str) -> None:
    """aiortc's answer as we rely on it: `active` to actpass (JSEP 5.3.1), else the
    complement of the offer."""
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTransceiver("video", direction="recvonly")
        offer = await offerer.createOffer()
        sdp = offer.sdp.replace("a=setup:actpass", f"a=setup:{offered}")
        await answerer.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        answerer.getTransceivers()[0].direction = "sendonly"
        answer = await answerer.createAnswer()
        assert answer is not None
        assert {line for line in answer.sdp.splitlines() if line.startswith("a=setup:")} == {
            f"a=setup:{answered}"
        }
    finally:
        await offerer.close()
        await answerer.close()


@pytest.mark.usefixtures("hardened")
def test_dtls_1_0_is_refused() -> None:
    peer = peer_context(ec.generate_private_key(ec.SECP256R1()))
    peer.set_max_proto_version(0xFEFF)  # DTLS 1.0
    with pytest.raises(SSL.Error):
        handshake(peer, ours())


@pytest.mark.usefixtures("hardened")
async def test_aiortc_transports_handshake_through_the_hook() -> None:
    """Two aiortc peers on loopback: each DTLS transport's context is ours."""
    gather_only(["127.0.0.1"])
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.createDataChannel("probe")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        connected = await eventually(
            lambda: offerer.connectionState == answerer.connectionState == "connected", 10
        )
        assert connected, (offerer.connectionState, answerer.connectionState)
        for pc, role in ((offerer, "server"), (answerer, "client")):
            assert pc.sctp is not None
            transport = pc.sctp.transport
            assert transport._role == role  # the answerer is active: the DTLS client
            ssl = transport._ssl
            assert ssl is not None
            assert ssl.get_cipher_list()[-4:] == list(dtls.CIPHER_SUITES)
            assert ssl.get_cipher_name() == "ECDHE-ECDSA-AES128-GCM-SHA256"
            assert ssl.get_selected_srtp_profile() == b"SRTP_AEAD_AES_256_GCM"
    finally:
        await offerer.close()
        await answerer.close()
        gather_only(None)
