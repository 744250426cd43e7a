/* classroom-edge, the pupil's page: relay mode (config.relay). The page asks POST /relay/{room} for
 * a Janus grant instead of WHEP, plays the streaming plugin's offer (janus.js, window.classroomJanus),
 * its camera/board/audio by mid, and beats the service's relay session resource while it watches.
 * The service chooses the renditions as for WHEP, from what this page measures (quality.js reports
 * it every 2 s); the page asks Janus for the substreams chosen (applyRelayChoice), stepping down by
 * itself first on heavy loss (relayFirstAid). While the pupil may speak, the page plays the
 * mountpoint's `ducked` audio instead of `audio`. */

import { authHeaders, waitForGathering, watchDtls } from './whep.js';
import { withOutlook } from './waiting.js';
import { showBoard } from './media.js';

// Janus offers: its transceivers come with the offer, matched by mid (mapRelayTransceivers).
export function prepareRelay(s) {
  s.camera = s.board = s.audio = s.ducked = null;
  s.substreams = s.chosen = s.aid = null;     // what went to Janus; the service's choice; first aid
  s.aidStrikes = 0;
  s.pc.onicecandidate = (ev) => { if (s.sent && s.janus) s.janus.trickle(ev.candidate); };
}

// Janus names its m-lines by the mountpoint's media ids: camera, board, audio (else: in order).
export function mapRelayTransceivers(s) {
  const videos = [];
  s.pc.getTransceivers().forEach((tr) => {
    const kind = tr.receiver.track && tr.receiver.track.kind;
    if (tr.mid === 'camera') s.camera = tr;
    else if (tr.mid === 'board') s.board = tr;
    else if (tr.mid === 'ducked') s.ducked = tr;
    else if (tr.mid === 'audio' || (kind === 'audio' && !s.audio)) s.audio = tr;
    else if (kind === 'video') videos.push(tr);
  });
  videos.forEach((tr) => {
    if (!s.camera) s.camera = tr; else if (!s.board && tr !== s.camera) s.board = tr;
  });
}

// The relay session resource: config.relay as a URL, else the WHEP endpoint's sibling.
function relayEndpoint(config) {
  if (typeof config.relay === 'string') return new URL(config.relay, location.href);
  const url = new URL(config.whep, location.href);
  url.pathname = url.pathname.replace(/\/whep\/([^/]+)\/?$/, '/relay/$1');
  return url;
}

// A grant from the service (POST /relay/{room}), then Janus's offer and our answer.
// Resolves like negotiate() in whep.js; throws on network errors, timeouts and Janus refusing.
export async function negotiateRelay(app, s) {
  const url = relayEndpoint(app.config);
  const base = url.origin + url.pathname.replace(/\/+$/, '');
  url.search = '';
  if (app.classroom.saveData) url.searchParams.set('save_data', '1');
  if (app.me) url.searchParams.set('as', app.me.key);
  const channel = await s.channelReady;
  if (channel) url.searchParams.set('channel', channel);
  const ctrl = window.AbortController ? new AbortController() : null;
  const timer = setTimeout(() => { if (ctrl) ctrl.abort(); }, 15000);
  const res = await fetch(url.href, {
    method: 'POST', headers: authHeaders(app.config), cache: 'no-store', signal: ctrl ? ctrl.signal : undefined
  }).finally(() => clearTimeout(timer));
  const out = { status: res.status, retryAfter: parseInt(res.headers.get('Retry-After') || '', 10) };
  if (res.status !== 201) {
    out.problem = await res.json().catch(() => ({}));
    if (res.status === 409 && !out.problem.now) out.problem = await withOutlook(app, out.problem);
    return out;
  }
  const grant = await res.json();
  const loc = res.headers.get('Location');
  s.beatUrl = loc ? new URL(loc, url).href : base + '/' + encodeURIComponent(grant.session);
  s.beatEvery = Math.max(5, Number(grant.beat_seconds) || 30) * 1000;
  s.location = s.beatUrl;     // the session resource: GET, PATCH save data, POST what the page measured
  if (s === app.current) app.classroom.location = s.beatUrl;
  if (grant.ice_servers) {
    try { s.pc.setConfiguration({ iceServers: grant.ice_servers, bundlePolicy: 'max-bundle' }); } catch (e) { /* keep the page's */ }
  }
  s.janus = await window.classroomJanus.open(new URL(grant.janus, location.href).href, grant.token, {
    onLost: s.drop,
    onHangup: s.drop,
    onCandidate: (c) => {
      s.pc.addIceCandidate(c && c.candidate ? c : null).catch(() => {});
    }
  });
  if (s === app.current) app.classroom.janus = { session: s.janus.session, handle: s.janus.handle, mountpoint: grant.mountpoint };
  const offer = await s.janus.watch(grant.mountpoint);
  await s.pc.setRemoteDescription(offer);
  mapRelayTransceivers(s);
  showBoard(app, !!s.board);     // Janus offers no board line for a room without one
  await s.pc.setLocalDescription(await s.pc.createAnswer());
  await waitForGathering(s.pc, 2000);
  s.sent = true;
  await s.janus.start(s.pc.localDescription);
  if (s.pc.iceGatheringState === 'complete') s.janus.trickle(null);
  watchDtls(s);
  applyRelayChoice(app, s, grant.state);
  return out;
}

// The renditions the service chose (its state's `substreams`: mid -> Janus substream, null: not
// sent), and the microphone this pupil hears: only what changed goes to Janus.
export function applyRelayChoice(app, s, state) {
  if (!s.janus || s.janus.closed || !state || !state.substreams) return;
  s.chosen = state.substreams;
  const aid = s.aid && Date.now() < s.aid.until ? s.aid : null;
  const streams = [];
  Object.keys(state.substreams).forEach((mid) => {
    let sub = state.substreams[mid];
    if (aid && mid in aid.substreams) sub = lower(sub, aid.substreams[mid]);     // first aid holds
    streams.push(sub === null ? { mid: mid, send: false } : { mid: mid, send: true, substream: sub, fallback: 1000000 });
  });
  if (s.ducked) {
    const ducked = !!(window.classroomTalk && window.classroomTalk.status.allowed);
    streams.push({ mid: 'audio', send: !ducked }, { mid: 'ducked', send: ducked });
    if (s === app.current) hear(app, ducked ? s.ducked : s.audio);     // (also after a rejoin)
  }
  const wanted = JSON.stringify(streams);
  if (wanted === s.substreams) return;
  s.substreams = wanted;
  s.janus.configure(streams).catch(() => { if (s.substreams === wanted) s.substreams = null; });
}

// null (not sent) is below substream 0
function lower(a, b) {
  if (a === null || b === null) return null;
  return Math.min(a, b);
}

const AID_LOSS = 0.1, AID_HOLD = 10000, AID_PAUSE_AFTER = 3;

// The page's first aid on the Janus path. The service's answers come down the same thin link
// as the media and can wait there for many seconds, while a request to Janus goes up, where
// there is room: on heavy loss (its own getStats, every 2 s) the page asks Janus at once for
// the cheapest substreams, after three such samples in a row for no camera (the sound goes on);
// for 10 s after the last heavy loss the service's choice may lower that, not raise it.
export function relayFirstAid(app, s, packets, lost) {
  if (!s.janus || s.janus.closed || !s.chosen) return;
  if (packets + lost < 20 || lost / (packets + lost) < AID_LOSS) {
    s.aidStrikes = 0;
    return;
  }
  s.aidStrikes = (s.aidStrikes || 0) + 1;
  const substreams = {};
  Object.keys(s.chosen).forEach((mid) => {
    substreams[mid] = mid === 'camera' && s.aidStrikes >= AID_PAUSE_AFTER ? null : 0;
  });
  s.aid = { substreams: substreams, until: Date.now() + AID_HOLD, strikes: s.aidStrikes };
  if (s === app.current) app.classroom.firstAid = s.aid;
  applyRelayChoice(app, s, { substreams: s.chosen });
}

// Allowed to speak: hear the ducked microphone (the room's speakers play this pupil), else the room.
export function relayHears(app) {
  const s = app.current;
  if (!s || !s.relay || !s.ducked || !s.chosen) return;
  applyRelayChoice(app, s, { substreams: s.chosen });     // Janus's send flags, and the sound
}

// The sound element plays `tr`'s track (the room's microphone, or its ducked copy).
function hear(app, tr) {
  const el = app.els.sound, track = tr && tr.receiver.track;
  const now = el.srcObject && el.srcObject.getAudioTracks()[0];
  if (!track || now === track) return;
  el.srcObject = new MediaStream([track]);
  if (!el.muted) el.play().catch(() => {});
}

// Tell the service the pupil still watches; 404: the session is gone, the next POST says why.
export function startBeats(app, s) {
  if (s.beatTimer || !s.beatUrl) return;
  beat(app, s);
  s.beatTimer = setInterval(() => beat(app, s), s.beatEvery);
}

function beat(app, s) {
  if (!s.beatUrl || navigator.onLine === false) return;
  const url = s.janus ? s.beatUrl + '?janus=' + encodeURIComponent(s.janus.session) : s.beatUrl;
  fetch(url, { method: 'POST', headers: authHeaders(app.config), cache: 'no-store' }).then((res) => {
    if (res.status !== 404 || s !== app.current) return;
    s.beatUrl = null;
    s.drop();
  }).catch(() => { /* offline: the link checks notice */ });
}

// Leaving: stop the beats, close the Janus session, DELETE the relay session resource.
export function closeRelay(app, s) {
  if (!s.relay) return;     // a WHEP session: deleteWhep DELETEs its resource
  clearInterval(s.beatTimer);
  s.location = null;     // the beat URL: DELETEd below, once
  if (s.janus) { s.janus.close(); s.janus = null; }
  if (s.beatUrl) {
    fetch(s.beatUrl, { method: 'DELETE', headers: authHeaders(app.config), keepalive: true }).catch(() => {});
    s.beatUrl = null;
  }
}
