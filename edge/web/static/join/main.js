/* classroom-edge: the pupil's live-lesson page (join.html), a WHEP viewer. ES modules, no build step,
 * no dependencies; talk.js (taking part) and janus.js (relay mode) are plain scripts loaded before.
 *   strings.js     the texts, Vietnamese and English
 *   connection.js  the page's state; joining, dropping, joining again
 *   whep.js        the WHEP session: offer, PATCH trickle, DELETE
 *   relay.js       relay mode: a Janus grant from the service, Janus's offer, beats
 *   waiting.js     the waiting room before and after a lesson, the lesson now
 *   picker.js      picking one's name on a class link
 *   quality.js     the link's grade, save data, the renditions the server chose, data used
 *   media.js       sound, swap, full screen, keeping the screen awake
 * Every module's functions take `app`, the page's state (below), as their first argument.
 * Test hook: window.classroom = {pc, state, config, quality, location, saveData, session, bytesReceived,
 * picture}: picture is false when the server rejected both video lines (no codec in common, sound only);
 * quality is the page's own grade of the link ('good' | 'fair' | 'poor', from getStats), session the
 * latest GET of the WHEP session resource (renditions the server chose, its link estimate),
 * saveData the pupil's "save data" choice, bytesReceived the bytes this page received so far;
 * relay is true when the page plays from Janus, janus then {session, handle, mountpoint} and
 * location the service's relay session resource (what the beats and the page's measures POST to,
 * whose state says the renditions chosen, as WHEP's does), firstAid what the page asked Janus for
 * by itself on heavy loss ({substreams, until, strikes}). */

import { STRINGS, pickLang, translator } from './strings.js';
import { setState, fail, showReconnecting, teardown, connect, retry, retryNow, rejoinNow, leave } from './connection.js';
import { rememberedChoice, remember, renderPicker } from './picker.js';
import { sampleStats, initialSaveData, renderSaveData, setSaveData } from './quality.js';
import { unmute, toggleMute, swap, toggleFullscreen, updateFullscreenLabel, keepAwake } from './media.js';
import { relayHears } from './relay.js';

const $ = (id) => document.getElementById(id);

function readConfig() {
  try {
    const c = JSON.parse($('join-config').textContent);
    return c && typeof c === 'object' && c.whep && c.token ? c : null;
  } catch (e) { return null; }
}

const els = {};
['stage', 'board', 'camera', 'sound', 'overlay', 'overlay-title', 'overlay-detail', 'retry', 'unmute',
  'state-text', 'quality', 'quality-word', 'notice', 'fullscreen', 'class-name', 'school', 'pupil',
  'data-panel', 'save-data', 'usage', 'rendition', 'rendition-word', 'stills-note', 'data-used',
  'lesson-info', 'countdown', 'rewatch', 'mute', 'lesson-now']
  .forEach((id) => { els[id] = $(id); });

const config = readConfig();
if (config && config.recordings && els.rewatch) { els.rewatch.href = config.recordings; els.rewatch.hidden = false; }
const lang = pickLang(config);
const classroom = window.classroom = {
  pc: null, state: 'connecting', config: config, quality: null, location: null,
  saveData: initialSaveData(), session: null, bytesReceived: 0, picture: true,
  relay: !!(config && config.relay), janus: null, firstAid: null
};

// The page's state, shared by the modules.
const app = {
  config: config,              // the page's settings (join.html's #join-config), null if unusable
  lang: lang,
  strings: STRINGS[lang],
  t: translator(STRINGS[lang]),
  els: els,
  classroom: classroom,        // window.classroom: the page's state as the tests read it
  me: null,                    // on a class link: {key, name} the pupil picked
  // connection.js
  current: null,               // session being set up or live: {pc, camera, board, audio, location, pending, ...}
  gen: 0,                      // bumped by every attempt and by pagehide; stale async work compares it
  busy: 0,                     // gen of the attempt still negotiating, 0 if none: never two set-ups at once
  terminal: false,             // no automatic retries (bad link, unknown room, other 4xx)
  everLive: false, attempts: 0, retryTimer: 0,
  // waiting.js
  clockOffset: 0,              // the school's clock minus this phone's (phones are often wrong)
  countdownTimer: 0, startsAt: NaN, lessonTimer: 0,
  // quality.js
  prevStats: null, weakTicks: 0, heavyLoss: false, bytesBase: 0, pollGen: 0, pollTimer: 0, pollCtrl: null,
  // media.js
  wakeLock: null, wantAwake: false
};

function renderHeader() {
  const t = app.t;
  document.documentElement.lang = lang;
  document.querySelectorAll('[data-i18n]').forEach((el) => { el.textContent = t(el.getAttribute('data-i18n')); });
  const cls = config && config['class'] ? String(config['class']) : '';
  document.title = cls ? t('title', { 'class': cls }) : t('pageTitle');
  els['class-name'].textContent = cls ? t('classLabel', { 'class': cls }) : t('pageTitle');
  els.school.textContent = (config && config.school) || '';
  const name = config && config.pupil && config.pupil.name;
  els.pupil.hidden = !name && !app.me;
  if (name) els.pupil.textContent = t('hello', { name: name });
  else if (app.me) {
    els.pupil.textContent = t('iAm', { name: app.me.name });
    const change = document.createElement('button');
    change.type = 'button';
    change.textContent = t('change');
    change.onclick = () => { app.me = null; remember(config, null); teardown(app, app.current); showPicker(); };
    els.pupil.appendChild(change);
  }
  els.board.setAttribute('aria-label', t('board'));
  els.camera.setAttribute('aria-label', t('camera'));
  updateFullscreenLabel(app);
  renderSaveData(app);
}

function showPicker() {
  renderPicker(config, (c) => {
    app.me = c;
    remember(config, c);
    renderHeader();
    connect(app);
  });
  renderHeader();
  setState(app, 'picking', app.t('pickTitle'), app.t('pickHelp'));
}

function bindEvents() {
  els.unmute.addEventListener('click', () => unmute(app));
  els.mute.addEventListener('click', () => toggleMute(app));
  $('swap').addEventListener('click', () => swap(app));
  [els.board, els.camera].forEach((v) => {
    v.addEventListener('click', () => { if (v.classList.contains('pip')) swap(app); });
  });
  els.retry.addEventListener('click', () => retry(app));
  els.fullscreen.addEventListener('click', () => toggleFullscreen(app));
  els['save-data'].addEventListener('click', () => setSaveData(app, !classroom.saveData));
  els.fullscreen.hidden = !(els.stage.requestFullscreen || els.stage.webkitRequestFullscreen || els.board.webkitEnterFullscreen);
  document.addEventListener('fullscreenchange', () => updateFullscreenLabel(app));
  document.addEventListener('webkitfullscreenchange', () => updateFullscreenLabel(app));
  window.addEventListener('online', () => retryNow(app));
  window.addEventListener('offline', () => { if (classroom.state === 'reconnecting') showReconnecting(app); });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible') return;
    keepAwake(app, app.wantAwake);
    retryNow(app);
  });
  // the teacher removed this pupil (talk.js heard it on the channel): the picture ends now,
  // on either path, not at the next failed reconnect
  document.addEventListener('classroom:removed', () => fail(app, app.t('removed'), app.t('removedHelp'), false));
  document.addEventListener('classroom:rejoin', () => rejoinNow(app));
  document.addEventListener('classroom:allowed', () => relayHears(app));     // talk.js's status says which
  window.addEventListener('pagehide', () => leave(app));
  window.addEventListener('pageshow', (ev) => { if (ev.persisted) retryNow(app); });
  setInterval(() => { sampleStats(app).catch(() => {}); }, 2000);
}

function start() {
  app.me = rememberedChoice(config);
  renderHeader();
  bindEvents();
  if (!config) return fail(app, app.t('badPage'), app.t('badPageHelp'), false);
  if (!window.RTCPeerConnection || !window.fetch || !('addTransceiver' in RTCPeerConnection.prototype) ||
      (classroom.relay && !window.classroomJanus)) {
    return fail(app, app.t('unsupported'), app.t('unsupportedHelp'), false);
  }
  if (!config.pupil && !app.me && config.classmates && config.classmates.length) return showPicker();
  connect(app);
}

start();
