/* classroom-edge, the pupil's page: joining the lesson and staying in it. The page's state
 * (connecting, live, waiting, ...), one session at a time (WHEP, or Janus in relay mode), and
 * starting again after a drop with backoff, at the bell, or as soon as the network is back. */

import { newPeerConnection, prepareWhep, joinChannel, negotiate, deleteWhep } from './whep.js';
import { prepareRelay, mapRelayTransceivers, negotiateRelay, startBeats, closeRelay } from './relay.js';
import { waitingView, showCountdown, showLessonNow, schoolNow } from './waiting.js';
import { resetQuality, updateNotice, pollSession, renderSession } from './quality.js';
import { play, keepAwake } from './media.js';

// name: picking | connecting | live | reconnecting | waiting | ended | error
export function setState(app, name, title, detail) {
  const els = app.els, classroom = app.classroom;
  classroom.state = name;
  document.body.setAttribute('data-state', name);
  els['state-text'].textContent = els['overlay-title'].textContent = title || app.t(name);
  els['overlay-detail'].textContent = (detail || '').trim();
  els.overlay.hidden = name === 'live';
  els.retry.hidden = true;
  if (name !== 'waiting') showCountdown(app, NaN, null);
  if (name !== 'live') resetQuality(app);
  els.quality.hidden = !classroom.quality;
  els['data-panel'].hidden = name === 'error';
  renderSession(app);
  updateNotice(app);
  pollSession(app, name === 'live');
  keepAwake(app, name === 'live' || name === 'reconnecting');
}

// An error the page cannot fix alone; `offerRetry` shows the "Thử lại" button.
export function fail(app, title, detail, offerRetry) {
  clearTimeout(app.retryTimer);
  teardown(app, app.current);
  app.terminal = true;
  setState(app, 'error', title, detail);
  app.els.retry.hidden = !offerRetry;
}

export function showReconnecting(app) {
  const help = navigator.onLine === false ? 'offlineHelp' : app.everLive ? 'reconnectingHelp' : 'retryHelp';
  setState(app, 'reconnecting', null, app.t(help));
}

function showWaiting(app, problem) {
  const view = waitingView(app, problem);
  setState(app, view.state, null, view.detail);
  showCountdown(app, view.at, view.lesson);
}

/* ---------- one session ---------- */

function newSession(app) {
  const pc = newPeerConnection(app.config);
  const s = {
    pc: pc, location: null, pending: [], sent: false, discTimer: 0, connectTimer: 0, dtls: null,
    bytes: 0, patchedAt: 0, relay: app.classroom.relay, janus: null, beatUrl: null, beatTimer: 0,
    drop: () => { if (s === app.current) drop(app); }     // its link broke: start again if still the page's
  };
  pc.onconnectionstatechange = pc.oniceconnectionstatechange = () => onLinkChange(app, s);
  pc.ontrack = (ev) => { if (s === app.current) onTrack(app, s, ev); };
  if (s.relay) { prepareRelay(s); joinChannel(app, s); } else prepareWhep(app, s);
  return s;
}

function onTrack(app, s, ev) {
  const els = app.els;
  const tr = ev.transceiver || s.pc.getTransceivers().filter((x) => x.receiver === ev.receiver)[0];
  if (s.relay) mapRelayTransceivers(s);
  if (s.relay && tr === s.ducked) return;     // played while the pupil may speak (relayHears)
  const el = tr === s.camera ? els.camera : tr === s.board ? els.board : ev.track.kind === 'audio' ? els.sound : null;
  if (!el) return;
  if (el === els.sound && !s.relay) return soundAfterPicture(app, s, ev.track);
  el.srcObject = new MediaStream([ev.track]);
  play(app, el);
}

const SOUND_WAIT = 1000;     // ms: the longest the sound waits for the picture

// The sound starts once the first picture is on screen (or SOUND_WAIT after its track came):
// opening the audio output holds up the page's main thread for a moment, and the picture,
// the overlay that hides it until then included, waited behind it (Chromium on Linux
// without PulseAudio: 90-140 ms; bench/first_picture.py).
function soundAfterPicture(app, s, track) {
  const els = app.els, videos = [els.camera, els.board];
  let timer = 0, started = false;
  const start = () => {
    if (started) return;
    started = true;
    clearTimeout(timer);
    videos.forEach((v) => v.removeEventListener('loadeddata', shown));
    if (s !== app.current) return;     // a session of the past
    els.sound.srcObject = new MediaStream([track]);
    play(app, els.sound);
  };
  // once painted: the next animation frame, then the task after it
  const shown = () => requestAnimationFrame(() => setTimeout(start, 0));
  timer = setTimeout(start, SOUND_WAIT);
  videos.forEach((v) => v.addEventListener('loadeddata', shown));
}

function linkState(pc) {
  if (pc.connectionState) return pc.connectionState;
  const ice = pc.iceConnectionState;     // browsers without connectionState
  return ice === 'checking' ? 'connecting' : ice === 'completed' ? 'connected' : ice;
}

function onLinkChange(app, s) {
  if (s !== app.current || app.busy) return;
  const st = linkState(s.pc);
  if (st === 'connected') {
    clearTimeout(s.discTimer);
    clearTimeout(s.connectTimer);
    s.discTimer = 0;
    app.attempts = 0;
    app.everLive = true;
    if (s.relay) startBeats(app, s);
    if (app.classroom.state !== 'live') { setState(app, 'live'); showLessonNow(app); }
  } else if (st === 'disconnected') {
    if (!s.discTimer) s.discTimer = setTimeout(s.drop, 4000);
  } else if (st === 'failed') {
    drop(app);
  }
}

export function teardown(app, s) {
  if (!s) return;
  app.bytesBase += s.bytes;     // what this peer connection received still counts
  s.bytes = 0;
  clearTimeout(s.discTimer);
  clearTimeout(s.connectTimer);
  s.pc.ontrack = s.pc.onicecandidate = s.pc.onconnectionstatechange = s.pc.oniceconnectionstatechange = null;
  if (s.dtls) s.dtls.onstatechange = null;
  try { s.pc.close(); } catch (e) { /* already closed */ }
  closeRelay(app, s);
  deleteWhep(app, s);
  if (s === app.current) {
    const classroom = app.classroom;
    app.current = classroom.pc = classroom.location = classroom.janus = null;
  }
}

/* ---------- joining, and joining again ---------- */

export async function connect(app) {
  if (app.busy || app.terminal || !app.config) return;
  clearTimeout(app.retryTimer);
  const my = app.busy = ++app.gen;
  teardown(app, app.current);
  if (app.classroom.state !== 'waiting' && app.classroom.state !== 'ended') {
    if (app.everLive || app.attempts > 0) showReconnecting(app); else setState(app, 'connecting', null, app.t('connectingHelp'));
  }
  let s = null, result;
  try {
    s = app.current = newSession(app);
    app.classroom.pc = s.pc;
    result = await (s.relay ? negotiateRelay(app, s) : negotiate(app, s));
  } catch (e) {
    result = { status: 0 };     // network error, timeout or an unusable answer
  }
  if (app.busy === my) app.busy = 0;
  if (my !== app.gen) return teardown(app, s);     // the page was hidden meanwhile
  handleResult(app, s, result);
}

function handleResult(app, s, r) {
  const t = app.t, st = r.status;
  if (st === 201) {
    s.connectTimer = setTimeout(s.drop, 20000);
    return onLinkChange(app, s);     // it may be connected already
  }
  teardown(app, s);
  const wait = r.retryAfter > 0 ? Math.min(Math.max(r.retryAfter, 5), 60) * 1000 : 0;
  if (st === 403 && r.problem && r.problem.title === 'Removed from the lesson') {
    return fail(app, t('removed'), t('removedHelp'), false);
  }
  if (st === 401 || st === 403) return fail(app, t('error'), t('badLinkHelp'), false);
  if (st === 404) return fail(app, t('error'), t('noRoomHelp'), false);
  if (st === 409) {           // no lesson live: ask again at the bell, and at least every 15 s
    app.attempts = 0;
    showWaiting(app, r.problem);
    const untilBell = app.startsAt - schoolNow(app) + 500;
    const poll = r.retryAfter > 0 ? Math.min(r.retryAfter, 60) * 1000 : 15000;
    return retryLater(app, Math.max(1000, isNaN(untilBell) ? poll : Math.min(poll, untilBell)));
  }
  if (st === 0 || st === 408 || st === 429 || st >= 500) {
    showReconnecting(app);
    return retryLater(app, Math.max(wait, backoff(app)));
  }
  fail(app, t('error'), t('errorHelp', { status: st }), true);
}

function backoff(app) {
  const base = Math.min(10, Math.pow(2, app.attempts++));     // 1, 2, 4, 8, 10, 10, ... s
  return Math.min(10, base * (0.85 + Math.random() * 0.3)) * 1000;
}

function retryLater(app, ms) {
  clearTimeout(app.retryTimer);
  app.retryTimer = setTimeout(() => connect(app), ms);
}

// The link broke after set-up: close it and start again with backoff.
function drop(app) {
  if (app.busy || app.terminal) return;
  teardown(app, app.current);
  showReconnecting(app);
  retryLater(app, backoff(app));
}

// Network is back, or the page is visible again: do not wait for the backoff timer.
export function retryNow(app) {
  if (app.busy || app.terminal || !app.config) return;
  const st = app.current && linkState(app.current.pc);
  if (st === 'connected' || st === 'connecting' || st === 'new') return;
  app.attempts = 0;
  connect(app);
}

// The service lost this page's media session (its viewer worker ended): join again at
// once, without waiting for the browser to notice the silence and for the backoff.
export function rejoinNow(app) {
  if (app.busy || app.terminal || !app.config || !app.current) return;
  teardown(app, app.current);
  showReconnecting(app);
  app.attempts = 0;
  retryLater(app, 0);
}

// "Thử lại" after an error.
export function retry(app) {
  app.terminal = false;
  app.attempts = 0;
  connect(app);
}

// The page goes away (or into the back/forward cache): stale async work sees gen changed.
export function leave(app) {
  app.gen++;
  app.busy = 0;
  clearTimeout(app.retryTimer);
  teardown(app, app.current);
  if (window.classroomTalk) window.classroomTalk.leave();
}
