/* classroom-edge, the pupil's page: the WHEP session (offer, POST, answer; PATCH trickle; DELETE).
 * Offer transceivers, in order: camera video, board video, classroom audio, all receive-only;
 * taking part (hand, messages, a turn to speak) is the classroom channel's (talk.js), which the
 * POST names (`?channel=`) so the teacher's "remove" ends this session too.
 * `app` is the page's state (main.js), `s` one session (connection.js: newSession). */

import { showBoard, showPicture } from './media.js';

// Every request to the service carries the join token.
export function authHeaders(config, type) {
  const h = { Authorization: 'Bearer ' + config.token };
  if (type) h['Content-Type'] = type;
  return h;
}

export function newPeerConnection(config) {
  try {
    return new RTCPeerConnection({ iceServers: config.ice_servers || [], bundlePolicy: 'max-bundle' });
  } catch (e) {     // a malformed ICE entry must not lock pupils out
    return new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  }
}

// H.264 first where the browser can say so (Safari before 14.5 and old Android WebViews cannot:
// their default order stands). A browser without H.264 keeps its own order; the server then
// sends VP8, or, with no video codec in common, rejects the video lines and sends sound only.
function preferH264(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities('video');
  if (!caps || !caps.codecs) return;
  const rank = (c) => {
    const fmtp = c.sdpFmtpLine || '';
    if (!/^video\/h264$/i.test(c.mimeType)) return 9;
    if (!/packetization-mode=1/.test(fmtp)) return 5;
    if (/profile-level-id=42e0/i.test(fmtp)) return 0;    // constrained baseline, what the server sends
    return /profile-level-id=42/i.test(fmtp) ? 1 : 2;
  };
  const codecs = caps.codecs.map((c, i) => ({ c: c, i: i, r: rank(c) }));
  if (!codecs.some((x) => x.r < 5)) return;
  codecs.sort((a, b) => a.r - b.r || a.i - b.i);
  try { transceiver.setCodecPreferences(codecs.map((x) => x.c)); } catch (e) { /* keep defaults */ }
}

// The classroom channel this session belongs to (opened by talk.js once), or null.
export function joinChannel(app, s) {
  const talk = window.classroomTalk;
  s.channelReady = talk ? talk.attach(s, app.config, app.me ? app.me.key : null) : Promise.resolve(null);
}

// The page's own offer: its transceivers, candidates to trickle.
export function prepareWhep(app, s) {
  const pc = s.pc;
  s.camera = pc.addTransceiver('video', { direction: 'recvonly' });
  s.board = pc.addTransceiver('video', { direction: 'recvonly' });
  s.audio = pc.addTransceiver('audio', { direction: 'recvonly' });
  joinChannel(app, s);
  preferH264(s.camera);
  preferH264(s.board);
  pc.onicecandidate = (ev) => {
    if (!s.sent) return;             // gathered before the POST: already in the offer
    s.pending.push(ev.candidate);    // null = end-of-candidates
    trickle(app, s);
  };
}

export function waitForGathering(pc, ms) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(done, ms);
    function check() { if (pc.iceGatheringState === 'complete') done(); }
    function done() { clearTimeout(timer); pc.removeEventListener('icegatheringstatechange', check); resolve(); }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

// The server ending the session (lesson over, restart) shows up at once as DTLS close_notify.
export function watchDtls(s) {
  const tr = s.camera || s.pc.getTransceivers()[0];
  const dtls = tr && tr.receiver.transport;
  if (!dtls || !('onstatechange' in dtls)) return;
  s.dtls = dtls;
  dtls.onstatechange = () => {
    if (dtls.state === 'closed' || dtls.state === 'failed') s.drop();
  };
}

// Offer, POST, answer. Resolves {status, problem, retryAfter}; throws on network errors and timeouts.
// The POST leaves as soon as the offer is made, while the browser applies it, and every
// candidate follows by PATCH: waiting for the gathering to complete cost 150 ms and more
// (Chromium gathers in 50 ms steps; STUN and TURN take round trips), and the service reaches
// the browser anyway by the browser's own checks (peer-reflexive candidates).
export async function negotiate(app, s) {
  const offer = (await s.pc.createOffer()).sdp;
  s.sent = true;                     // candidates: PATCH (trickle)
  const applied = s.pc.setLocalDescription({ type: 'offer', sdp: offer });
  applied.catch(() => {});           // awaited below, once answered
  const url = new URL(app.config.whep, location.href);
  if (app.classroom.saveData) url.searchParams.set('save_data', '1');
  if (app.me) url.searchParams.set('as', app.me.key);
  const channel = await s.channelReady;
  if (channel) url.searchParams.set('channel', channel);
  const whep = url.href;
  const ctrl = window.AbortController ? new AbortController() : null;
  const timer = setTimeout(() => { if (ctrl) ctrl.abort(); }, 15000);
  const res = await fetch(whep, {
    method: 'POST', headers: authHeaders(app.config, 'application/sdp'), body: offer,
    cache: 'no-store', signal: ctrl ? ctrl.signal : undefined
  }).finally(() => clearTimeout(timer));
  const out = { status: res.status, retryAfter: parseInt(res.headers.get('Retry-After') || '', 10) };
  if (res.status !== 201) {
    out.problem = await res.json().catch(() => ({}));
    return out;
  }
  const answer = await res.text();
  const loc = res.headers.get('Location');
  s.location = loc ? new URL(loc, whep).href : null;
  if (s === app.current) app.classroom.location = s.location;
  await applied;
  await s.pc.setRemoteDescription({ type: 'answer', sdp: answer });
  const rejected = rejectedMids(answer);     // no video codec in common with this browser
  // inactive: the room has no such source, or (the camera's line, the BUNDLE tag, which
  // cannot be rejected) no codec in common
  const gone = (tr) => rejected.indexOf(tr.mid) >= 0 || /^(inactive|stopped)$/.test(tr.currentDirection);
  showPicture(app, !(gone(s.camera) && gone(s.board)));
  showBoard(app, !gone(s.board));
  watchDtls(s);
  trickle(app, s);
  return out;
}

// The mids the answer rejected (port 0).
export function rejectedMids(sdp) {
  return sdp.split(/\r?\nm=/).slice(1).filter((m) => /^\w+ 0 /.test(m))
    .map((m) => (/a=mid:(\S+)/.exec(m) || [])[1]).filter(Boolean);
}

// Candidates found after the POST go to the session with PATCH (RFC 8840 SDP fragment).
function trickle(app, s) {
  if (!s.location || !s.pending.some(Boolean)) return;
  const cands = s.pending.splice(0), sdp = s.pc.localDescription.sdp;
  const ufrag = /a=ice-ufrag:(\S+)/.exec(sdp), pwd = /a=ice-pwd:(\S+)/.exec(sdp);
  if (!ufrag || !pwd) return;
  const lines = ['a=ice-ufrag:' + ufrag[1], 'a=ice-pwd:' + pwd[1]];
  sdp.split(/\r?\nm=/).slice(1).forEach((section, index) => {
    const mid = (/a=mid:(\S+)/.exec(section) || [])[1];
    const mine = cands.filter((c) => c && (c.sdpMid === mid || (c.sdpMid == null && c.sdpMLineIndex === index)));
    if (!mine.length) return;
    lines.push('m=' + section.split(/\r?\n/)[0], 'a=mid:' + mid);
    mine.forEach((c) => { lines.push('a=' + c.candidate); });
    if (cands.indexOf(null) >= 0) lines.push('a=end-of-candidates');
  });
  fetch(s.location, {
    method: 'PATCH', headers: authHeaders(app.config, 'application/trickle-ice-sdpfrag'), body: lines.join('\r\n') + '\r\n'
  }).catch(() => {});
}

// Leaving: DELETE the session resource (keepalive: it still goes out when the page unloads).
export function deleteWhep(app, s) {
  if (!s.location) return;
  fetch(s.location, { method: 'DELETE', headers: authHeaders(app.config), keepalive: true }).catch(() => {});
  s.location = null;
}
