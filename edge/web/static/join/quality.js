/* classroom-edge, the pupil's page: how the link does and what it costs. The page's own grade of
 * the link (getStats every 2 s), the weak-link notice, the "save data" switch (PATCHed to the
 * session), the renditions the server chose (polled from the session resource) and the data used. */

import { authHeaders } from './whep.js';
import { swap } from './media.js';
import { applyRelayChoice, relayFirstAid } from './relay.js';

const SAVE_KEY = 'classroom-edge.saveData';
const RENDITION_WORDS = { high: 'qHigh', hd: 'qHigh', medium: 'qMid', mid: 'qMid', half: 'qMid', low: 'qLow', sd: 'qLow' };

/* ---------- connection quality, every 2 s ---------- */

export async function sampleStats(app) {
  const s = app.current, classroom = app.classroom;
  if (!s || classroom.state !== 'live' || document.hidden) return;
  const report = await s.pc.getStats();
  const now = { pc: s.pc, at: Date.now(), lost: 0, recv: 0, frames: {}, all: 0, stalls: 0, bytes: 0 };
  const pairs = {};
  let selected = null, nominated = null, fps = null, transportBytes = null, rtpBytes = 0;
  report.forEach((r) => {
    if (r.type === 'inbound-rtp') {
      now.all += r.packetsReceived || 0;
      rtpBytes += (r.bytesReceived || 0) + (r.headerBytesReceived || 0);
      // the grade follows the video, or the sound when this browser gets no picture
      if (((r.kind || r.mediaType) === 'video') !== (classroom.picture !== false)) return;
      now.lost += Math.max(0, r.packetsLost || 0);
      now.recv += r.packetsReceived || 0;
      if ((r.kind || r.mediaType) !== 'video') return;
      if (typeof r.framesDecoded === 'number') now.frames[r.id] = r.framesDecoded;
    } else if (r.type === 'candidate-pair') {
      pairs[r.id] = r;
      if (r.nominated && r.state === 'succeeded') nominated = r;
    } else if (r.type === 'transport') {
      if (typeof r.bytesReceived === 'number') transportBytes = (transportBytes || 0) + r.bytesReceived;
      if (r.selectedCandidatePairId) selected = r.selectedCandidatePairId;
    }
  });
  if (s !== app.current) return;
  now.bytes = rtpBytes;
  s.bytes = Math.max(s.bytes, transportBytes !== null ? transportBytes : rtpBytes);
  showDataUsed(app);
  const prev = app.prevStats && app.prevStats.pc === s.pc ? app.prevStats : null;
  app.prevStats = now;
  if (!prev || s !== app.current) return;
  const dt = (now.at - prev.at) / 1000;
  Object.keys(now.frames).forEach((id) => {    // best video stream; the board runs at 5-10 fps
    if (id in prev.frames) fps = Math.max(fps || 0, (now.frames[id] - prev.frames[id]) / dt);
  });
  now.stalls = now.all === prev.all ? prev.stalls + 1 : 0;
  if (now.stalls >= 6) return s.drop();      // 12 s without a single packet: the session is dead
  const dRecv = now.recv - prev.recv, dLost = Math.max(0, now.lost - prev.lost);
  const pair = (selected && pairs[selected]) || nominated;
  const rtt = pair && typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime : null;
  const loss = dRecv + dLost ? dLost / (dRecv + dLost) : 1;
  if (s.relay) {
    addLinkReport(s, dt, Math.max(0, now.bytes - prev.bytes), dRecv, dLost, rtt);
    relayFirstAid(app, s, dRecv, dLost);
  }
  app.heavyLoss = loss >= 0.1;
  showQuality(app, grade(loss, fps, rtt));
}

// Relay mode: what this page received, for the service to choose renditions by (it cannot see
// Janus's receiver reports); summed until the next report goes (fetchSession).
function addLinkReport(s, interval, bytes, packets, lost, rtt) {
  const r = s.linkReport || (s.linkReport = { interval: 0, bytes: 0, packets: 0, lost: 0, rtt: null });
  r.interval = Math.min(60, r.interval + interval);
  r.bytes += bytes;
  r.packets += Math.max(0, packets);
  r.lost += lost;
  if (rtt !== null) r.rtt = Math.min(60, rtt);
}

function grade(loss, fps, rtt) {
  let level = loss >= 0.08 ? 2 : loss >= 0.02 ? 1 : 0;    // 0 good, 1 fair, 2 poor
  if (fps !== null) level = Math.max(level, fps < 4 ? 2 : fps < 10 ? 1 : 0);
  if (rtt !== null) level = Math.max(level, rtt >= 0.8 ? 2 : rtt >= 0.35 ? 1 : 0);
  return ['good', 'fair', 'poor'][level];
}

function showQuality(app, level) {
  const els = app.els;
  app.classroom.quality = level;
  els.quality.hidden = false;
  els.quality.setAttribute('data-level', level);
  els['quality-word'].textContent = app.t(level);
  app.weakTicks = level === 'poor' ? app.weakTicks + 1 : 0;
  updateNotice(app);
}

// Not live: no grade, no server word, no weak-link count.
export function resetQuality(app) {
  app.classroom.quality = app.classroom.session = null;
  app.weakTicks = 0;
  app.heavyLoss = false;
}

function showNotice(app, text) {
  app.els.notice.textContent = text;
  app.els.notice.hidden = !text;
}

// Weak link, by the server's word (recent loss or congestion) or by the page's own stats.
export function updateNotice(app) {
  if (app.classroom.state !== 'live') return showNotice(app, '');
  const srv = app.classroom.session;
  if (!(srv && srv.poor) && !app.heavyLoss && app.weakTicks < 2) return showNotice(app, '');
  const lowered = srv && srv.video && (srv.level < srv.levels - 1 || srv.video.camera === null);
  showNotice(app, app.t(lowered ? 'poorHint' : 'weakHint'));
}

/* ---------- save data, the renditions the server chose, data used ---------- */

// The pupil's last choice on this phone, else the browser's own data saver (Chrome "Lite mode").
export function initialSaveData() {
  try {
    const stored = window.localStorage.getItem(SAVE_KEY);
    if (stored === '1' || stored === '0') return stored === '1';
  } catch (e) { /* storage disabled: fall through */ }
  return !!(navigator.connection && navigator.connection.saveData);
}

// MB as phones count them (10^6 bytes), one decimal, with the locale's decimal comma.
function formatBytes(app, bytes) {
  const gb = bytes >= 999.95e6, value = (bytes / (gb ? 1e9 : 1e6)).toFixed(1);
  return (app.lang === 'vi' ? value.replace('.', ',') : value) + '\u00a0' + (gb ? 'GB' : 'MB');
}

function showDataUsed(app) {
  const els = app.els;
  const total = app.bytesBase + (app.current ? app.current.bytes : 0);
  app.classroom.bytesReceived = total;
  els['data-used'].hidden = !total;
  if (total) els['data-used'].textContent = app.t('dataUsed', { amount: formatBytes(app, total) });
  els.usage.hidden = els.rendition.hidden && els['data-used'].hidden;
}

export function renderSaveData(app) {
  const on = app.classroom.saveData;
  app.els['save-data'].setAttribute('aria-checked', on ? 'true' : 'false');
  document.body.setAttribute('data-save', on ? 'on' : 'off');
}

export function setSaveData(app, on) {
  app.classroom.saveData = on;
  try { window.localStorage.setItem(SAVE_KEY, on ? '1' : '0'); } catch (e) { /* not remembered */ }
  renderSaveData(app);
  if (app.current) sendSaveData(app, app.current);     // no session yet: the next POST carries it
}

// PATCH the wish on the session; the poll re-sends it if the server does not show it.
function sendSaveData(app, s) {
  if (!s.location) return;
  s.patchedAt = Date.now();
  fetch(s.location, {
    method: 'PATCH', headers: authHeaders(app.config, 'application/json'),
    body: JSON.stringify({ save_data: app.classroom.saveData }), cache: 'no-store'
  }).then((res) => {
    if (res.status !== 204) throw new Error('PATCH save_data: HTTP ' + res.status);
    if (s === app.current && app.classroom.state === 'live') pollSession(app, true);
  }).catch((e) => {
    s.patchedAt = 0;
    if (window.console) console.warn(String(e));
  });
}

// GET the session resource now and then every 2 s while live; `on` false stops it.
export function pollSession(app, on) {
  const my = ++app.pollGen;
  clearTimeout(app.pollTimer);
  if (app.pollCtrl) app.pollCtrl.abort();
  app.pollCtrl = null;
  if (!on) return;
  const tick = () => {
    fetchSession(app).catch(() => {}).then(() => {
      if (my === app.pollGen) app.pollTimer = setTimeout(tick, 2000);
    });
  };
  tick();
}

async function fetchSession(app) {
  const s = app.current, classroom = app.classroom;
  let sending = null;
  if (!s || !s.location || classroom.state !== 'live' || document.hidden || navigator.onLine === false) return;
  const ctrl = app.pollCtrl = window.AbortController ? new AbortController() : null;
  const timer = setTimeout(() => { if (ctrl) ctrl.abort(); }, 5000);
  try {
    const report = s.relay && s.linkReport && s.linkReport.interval >= 0.2 ? s.linkReport : null;
    s.linkReport = null;
    sending = report;
    const res = await fetch(s.location, report ? {     // relay: the beat with what the page measured
      method: 'POST', headers: authHeaders(app.config, 'application/json'), body: JSON.stringify({ link: report }),
      cache: 'no-store', signal: ctrl ? ctrl.signal : undefined
    } : {
      headers: authHeaders(app.config), cache: 'no-store', signal: ctrl ? ctrl.signal : undefined
    });
    if (res.status !== 200) return;
    sending = null;
    const state = await res.json();
    if (s !== app.current || classroom.state !== 'live' || !state || !state.video) return;
    classroom.session = state;
    if (s.relay) applyRelayChoice(app, s, state);
    renderSession(app);
    updateNotice(app);
    if (state.save_data !== classroom.saveData && Date.now() - s.patchedAt > 3000) sendSaveData(app, s);
  } finally {
    clearTimeout(timer);
    if (app.pollCtrl === ctrl) app.pollCtrl = null;
    if (sending) addLinkReport(s, sending.interval, sending.bytes, sending.packets, sending.lost, sending.rtt);     // not sent: next time
  }
}

export function renderSession(app) {
  const els = app.els, t = app.t;
  const srv = app.classroom.session, video = srv && srv.video;
  els.rendition.hidden = !video;
  els['stills-note'].hidden = !(video && video.board === 'stills');
  const cameraOff = !!video && video.camera === null;
  document.body.setAttribute('data-camera', cameraOff ? 'off' : 'on');
  els.usage.hidden = els.rendition.hidden && els['data-used'].hidden;
  if (!video) return;
  let word;
  if (video.camera === null) word = t(video.board === null ? 'qAudio' : 'qPaused');
  else word = RENDITION_WORDS.hasOwnProperty(video.camera) ? t(RENDITION_WORDS[video.camera]) : String(video.camera);
  els['rendition-word'].textContent = word;
  els.rendition.setAttribute('data-camera', video.camera === null ? 'off' : String(video.camera));
  if (cameraOff && els.camera.classList.contains('big')) swap(app);     // a frozen camera must not fill the stage
}
