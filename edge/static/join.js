/* classroom-edge: the pupil's live-lesson page, a WHEP viewer.
 * Plain ES2018, no dependencies. Transceivers, in order: camera video,
 * board video, classroom audio (all recvonly). Test hook: window.classroom. */
(function () {
  'use strict';

  var STRINGS = {
    vi: {
      title: 'Lớp {class} · Học trực tuyến', pageTitle: 'Học trực tuyến', classLabel: 'Lớp {class}', hello: 'Xin chào, {name}',
      connecting: 'Đang kết nối…', live: 'Đang học trực tiếp', reconnecting: 'Đang kết nối lại…',
      waiting: 'Chưa đến giờ học', ended: 'Buổi học đã kết thúc', error: 'Không vào được lớp học',
      connectingHelp: 'Em chờ một chút nhé.',
      reconnectingHelp: 'Mạng vừa bị ngắt. Trang sẽ tự vào lại lớp.',
      offlineHelp: 'Điện thoại đang mất mạng. Em hãy kiểm tra Wi-Fi hoặc 4G.',
      nextAt: 'Tiết học tiếp theo bắt đầu lúc {time}.',
      autoJoin: 'Trang sẽ tự vào lớp khi đến giờ, em không cần tải lại trang.',
      thanks: 'Cảm ơn em đã tham gia buổi học.',
      badLinkHelp: 'Đường link không còn hiệu lực. Em hãy xin thầy cô đường link mới.',
      noRoomHelp: 'Không tìm thấy lớp học này. Em hãy hỏi lại thầy cô đường link của lớp.',
      unsupported: 'Trình duyệt không hỗ trợ', unsupportedHelp: 'Em hãy mở đường link bằng Chrome hoặc Safari bản mới.',
      badPage: 'Trang bị lỗi', badPageHelp: 'Em hãy tải lại trang hoặc xin thầy cô đường link mới.',
      errorHelp: 'Mã lỗi {status}. Em hãy bấm “Thử lại” hoặc báo thầy cô.',
      today: 'hôm nay', tomorrow: 'ngày mai',
      weekdays: ['Chủ nhật', 'Thứ Hai', 'Thứ Ba', 'Thứ Tư', 'Thứ Năm', 'Thứ Sáu', 'Thứ Bảy'],
      network: 'Mạng:', good: 'Tốt', fair: 'Trung bình', poor: 'Yếu',
      weakHint: 'Mạng yếu: hình có thể bị giật, nhưng tiếng vẫn được ưu tiên.',
      unmute: 'Chạm để bật tiếng', swap: 'Đổi hình', fullscreen: 'Phóng to', exitFullscreen: 'Thu nhỏ',
      retry: 'Thử lại', tip: 'Xoay ngang điện thoại để xem bảng to và rõ hơn.', board: 'Màn hình bảng', camera: 'Camera lớp học'
    },
    en: {
      title: 'Class {class} · Live lesson', pageTitle: 'Live lesson', classLabel: 'Class {class}', hello: 'Hello, {name}',
      connecting: 'Connecting…', live: 'Live lesson', reconnecting: 'Reconnecting…',
      waiting: 'The lesson has not started yet', ended: 'The lesson has ended', error: 'Cannot join the lesson',
      connectingHelp: 'Please wait a moment.',
      reconnectingHelp: 'The connection dropped. The page will rejoin by itself.',
      offlineHelp: 'Your phone is offline. Please check Wi-Fi or mobile data.',
      nextAt: 'The next lesson starts at {time}.',
      autoJoin: 'The page will join by itself when it starts; no need to reload.',
      thanks: 'Thank you for joining the lesson.',
      badLinkHelp: 'This link is no longer valid. Please ask your teacher for a new one.',
      noRoomHelp: 'This class was not found. Please ask your teacher for the class link again.',
      unsupported: 'Browser not supported', unsupportedHelp: 'Please open the link in a recent Chrome or Safari.',
      badPage: 'Page error', badPageHelp: 'Please reload the page or ask your teacher for a new link.',
      errorHelp: 'Error code {status}. Tap “Try again” or tell your teacher.',
      today: 'today', tomorrow: 'tomorrow',
      weekdays: ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'],
      network: 'Network:', good: 'Good', fair: 'Fair', poor: 'Weak',
      weakHint: 'Weak network: the picture may stutter, but sound comes first.',
      unmute: 'Tap to turn on sound', swap: 'Swap views', fullscreen: 'Full screen', exitFullscreen: 'Exit full screen',
      retry: 'Try again', tip: 'Turn your phone sideways to see the board bigger.', board: 'Board screen', camera: 'Classroom camera'
    }
  };

  var $ = function (id) { return document.getElementById(id); };
  var els = {};
  ['stage', 'board', 'camera', 'sound', 'overlay', 'overlay-title', 'overlay-detail', 'retry', 'unmute',
    'unmute-text', 'state-text', 'quality', 'quality-label', 'quality-word', 'notice', 'swap', 'fullscreen',
    'class-name', 'school', 'pupil', 'tip'].forEach(function (id) { els[id] = $(id); });

  var config = readConfig();
  var lang = pickLang(config);
  var S = STRINGS[lang];
  var classroom = window.classroom = { pc: null, state: 'connecting', config: config, quality: null, location: null };

  var current = null;      // the session being set up or live: {pc, location, pending, sent, timers}
  var gen = 0;             // bumps on every attempt; stale async work checks it
  var busy = 0;            // gen of the attempt still being negotiated, 0 if none
  var terminal = false;    // no automatic retries (bad link, unknown room, ...)
  var everLive = false;
  var attempts = 0;
  var retryTimer = 0;
  var linkIce = [];        // ICE servers learnt from Link headers, used on reconnect
  var wakeLock = null;

  function t(key, vars) {
    return String(S[key]).replace(/\{(\w+)\}/g, function (m, k) { return vars && k in vars ? vars[k] : m; });
  }

  function readConfig() {
    try {
      var c = JSON.parse($('join-config').textContent);
      return c && typeof c === 'object' && c.whep && c.token ? c : null;
    } catch (e) { return null; }
  }

  function pickLang(c) {
    var q = new URLSearchParams(location.search).get('lang');
    if (q === 'en' || q === 'vi') return q;
    return c && c.lang === 'en' ? 'en' : 'vi';
  }

  /* ---------- static text and header ---------- */

  function renderHeader() {
    document.documentElement.lang = lang;
    var cls = config && config['class'] ? String(config['class']) : '';
    document.title = cls ? t('title', { 'class': cls }) : t('pageTitle');
    els['class-name'].textContent = cls ? t('classLabel', { 'class': cls }) : t('pageTitle');
    els.school.textContent = (config && config.school) || '';
    var pupil = config && config.pupil;
    els.pupil.hidden = !(pupil && pupil.name);
    if (pupil && pupil.name) els.pupil.textContent = t('hello', { name: pupil.name });
    els['unmute-text'].textContent = t('unmute');
    els.swap.textContent = t('swap');
    els.retry.textContent = t('retry');
    els.tip.textContent = t('tip');
    els['quality-label'].textContent = t('network');
    els.board.setAttribute('aria-label', t('board'));
    els.camera.setAttribute('aria-label', t('camera'));
    updateFullscreenLabel();
  }

  /* ---------- state ---------- */

  // name: connecting | live | reconnecting | waiting | ended | error
  function setState(name, title, detail) {
    classroom.state = name;
    document.body.setAttribute('data-state', name);
    var head = title || t(name);
    els['state-text'].textContent = head;
    els['overlay-title'].textContent = head;
    els['overlay-detail'].textContent = (detail || '').trim();
    els.overlay.hidden = name === 'live';
    els.retry.hidden = !(name === 'error' && els.retry.dataset.allowed === '1');
    if (name !== 'live') { classroom.quality = null; showNotice(''); }
    els.quality.hidden = !classroom.quality;
    keepAwake(name === 'live' || name === 'reconnecting');
  }

  function fail(title, detail, allowRetry) {
    terminal = true;
    clearTimeout(retryTimer);
    teardown(current);
    els.retry.dataset.allowed = allowRetry ? '1' : '0';
    setState('error', title, detail);
  }

  function showNotice(text) {
    els.notice.textContent = text;
    els.notice.hidden = !text;
  }

  // "2026-11-25T08:05:00+07:00" -> "08:05 hôm nay" in the school's own wall-clock time.
  function formatStart(iso) {
    var m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::[\d.]+)?(Z|[+-]\d\d:?\d\d)?$/.exec(String(iso || ''));
    if (!m) return '';
    var offset = -new Date().getTimezoneOffset();     // no offset given: the phone's own time
    if (m[6]) {
      var o = m[6] === 'Z' ? '+0000' : m[6].replace(':', '');
      offset = (o[0] === '-' ? -1 : 1) * (parseInt(o.slice(1, 3), 10) * 60 + parseInt(o.slice(3), 10));
    }
    var day = Date.UTC(+m[1], +m[2] - 1, +m[3]);
    var schoolNow = new Date(Date.now() + offset * 60000);   // school wall clock, read with UTC getters
    var today = Date.UTC(schoolNow.getUTCFullYear(), schoolNow.getUTCMonth(), schoolNow.getUTCDate());
    var diff = Math.round((day - today) / 86400000);
    var when = diff === 0 ? t('today') : diff === 1 ? t('tomorrow')
      : S.weekdays[new Date(day).getUTCDay()] + ' ' + (+m[3]) + '/' + (+m[2]);
    return m[4] + ':' + m[5] + (diff === 0 || diff === 1 ? '\u00a0' : ', ') + when;
  }

  function showWaiting(nextStart) {
    var time = formatStart(nextStart);
    var next = time ? t('nextAt', { time: time }) + ' ' : '';
    if (everLive) setState('ended', null, t('thanks') + ' ' + next);
    else setState('waiting', null, next + t('autoJoin'));
  }

  function showReconnecting() {
    setState('reconnecting', null, navigator.onLine === false ? t('offlineHelp') : t('reconnectingHelp'));
  }

  /* ---------- WebRTC session ---------- */

  function iceServers() {
    var list = (config.ice_servers || []).slice();
    var seen = list.map(function (s) { return JSON.stringify(s.urls); });
    linkIce.forEach(function (s) { if (seen.indexOf(JSON.stringify(s.urls)) < 0) list.push(s); });
    return list;
  }

  function preferH264(transceiver) {
    if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
    var caps = RTCRtpReceiver.getCapabilities('video');
    if (!caps || !caps.codecs) return;
    var rank = function (c) {
      var fmtp = c.sdpFmtpLine || '';
      if (!/^video\/h264$/i.test(c.mimeType)) return 9;
      if (!/packetization-mode=1/.test(fmtp)) return 5;
      if (/profile-level-id=42e0/i.test(fmtp)) return 0;   // constrained baseline
      return /profile-level-id=42/i.test(fmtp) ? 1 : 2;
    };
    var codecs = caps.codecs.map(function (c, i) { return { c: c, i: i, r: rank(c) }; });
    if (!codecs.some(function (x) { return x.r < 5; })) return;
    codecs.sort(function (a, b) { return a.r - b.r || a.i - b.i; });
    try { transceiver.setCodecPreferences(codecs.map(function (x) { return x.c; })); } catch (e) { /* keep defaults */ }
  }

  function newSession() {
    var pc;
    try {
      pc = new RTCPeerConnection({ iceServers: iceServers(), bundlePolicy: 'max-bundle' });
    } catch (e) {       // a malformed ICE server entry must not lock the pupil out
      pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    }
    var s = { pc: pc, location: null, pending: [], sent: false, discTimer: 0, connectTimer: 0 };
    s.camera = pc.addTransceiver('video', { direction: 'recvonly' });
    s.board = pc.addTransceiver('video', { direction: 'recvonly' });
    s.audio = pc.addTransceiver('audio', { direction: 'recvonly' });
    preferH264(s.camera);
    preferH264(s.board);
    pc.ontrack = function (ev) { if (s === current) onTrack(s, ev); };
    pc.onicecandidate = function (ev) {
      if (!s.sent) return;             // gathered before the POST: already in the offer
      s.pending.push(ev.candidate);    // null marks end-of-candidates
      trickle(s);
    };
    pc.onconnectionstatechange = pc.oniceconnectionstatechange = function () { onLinkChange(s); };
    return s;
  }

  function onTrack(s, ev) {
    var tr = ev.transceiver || s.pc.getTransceivers().filter(function (x) { return x.receiver === ev.receiver; })[0];
    var el = tr === s.camera ? els.camera : tr === s.board ? els.board : ev.track.kind === 'audio' ? els.sound : null;
    if (!el) return;
    el.srcObject = new MediaStream([ev.track]);
    play(el);
  }

  function linkState(pc) {
    if (pc.connectionState) return pc.connectionState;
    var ice = pc.iceConnectionState;     // older browsers: map ICE state
    return ice === 'checking' ? 'connecting' : ice === 'completed' ? 'connected' : ice;
  }

  function onLinkChange(s) {
    if (s !== current || busy) return;
    var st = linkState(s.pc);
    if (st === 'connected') {
      clearTimeout(s.discTimer); s.discTimer = 0;
      clearTimeout(s.connectTimer);
      attempts = 0;
      everLive = true;
      if (classroom.state !== 'live') setState('live');
    } else if (st === 'disconnected') {
      if (!s.discTimer) s.discTimer = setTimeout(function () { if (s === current) drop(); }, 4000);
    } else if (st === 'failed') {
      drop();
    }
  }

  function waitForGathering(pc, ms) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === 'complete') return resolve();
      var timer = setTimeout(done, ms);
      function check() { if (pc.iceGatheringState === 'complete') done(); }
      function done() { clearTimeout(timer); pc.removeEventListener('icegatheringstatechange', check); resolve(); }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  function authHeaders(type) {
    var h = { Authorization: 'Bearer ' + config.token };
    if (type) h['Content-Type'] = type;
    return h;
  }

  function fetchWithTimeout(url, options, ms) {
    var ctrl = window.AbortController ? new AbortController() : null;
    var timer = ctrl ? setTimeout(function () { ctrl.abort(); }, ms) : 0;
    if (ctrl) options.signal = ctrl.signal;
    return fetch(url, options).then(function (r) { clearTimeout(timer); return r; },
      function (e) { clearTimeout(timer); throw e; });
  }

  // Offer, POST, answer. Resolves {status, problem, retryAfter}; throws on network errors.
  async function negotiate(s) {
    await s.pc.setLocalDescription(await s.pc.createOffer());
    await waitForGathering(s.pc, 2000);
    s.sent = true;
    var whep = new URL(config.whep, location.href).href;
    var res = await fetchWithTimeout(whep, {
      method: 'POST', headers: authHeaders('application/sdp'), body: s.pc.localDescription.sdp, cache: 'no-store'
    }, 15000);
    var out = { status: res.status, retryAfter: parseInt(res.headers.get('Retry-After') || '', 10) };
    if (res.status !== 201) {
      out.problem = await res.json().catch(function () { return {}; });
      return out;
    }
    var answer = await res.text();
    s.location = new URL(res.headers.get('Location') || '', whep).href;
    linkIce = parseIceLinks(res.headers.get('Link'));
    if (s === current) classroom.location = s.location;
    await s.pc.setRemoteDescription({ type: 'answer', sdp: answer });
    trickle(s);
    return out;
  }

  async function connect() {
    if (busy || terminal || !config) return;
    clearTimeout(retryTimer);
    var my = busy = ++gen;
    teardown(current);
    if (classroom.state !== 'waiting' && classroom.state !== 'ended') {
      if (everLive || attempts > 0) showReconnecting(); else setState('connecting', null, t('connectingHelp'));
    }
    var s, result;
    try {
      s = current = newSession();
      classroom.pc = s.pc;
      result = await negotiate(s);
    } catch (e) {
      result = { status: 0 };     // network error, timeout or a bad answer
    }
    if (busy === my) busy = 0;
    if (my !== gen) { teardown(s); return; }   // page hidden or superseded meanwhile
    handleResult(s, result);
  }

  function handleResult(s, r) {
    var st = r.status;
    if (st === 201) {
      s.connectTimer = setTimeout(function () { if (s === current) drop(); }, 20000);
      onLinkChange(s);               // may already be connected
      return;
    }
    teardown(s);
    var wait = r.retryAfter > 0 ? Math.min(Math.max(r.retryAfter, 5), 60) * 1000 : 0;
    if (st === 401 || st === 403) return fail(t('error'), t('badLinkHelp'), false);
    if (st === 404) return fail(t('error'), t('noRoomHelp'), false);
    if (st === 409) {
      attempts = 0;
      showWaiting(r.problem && r.problem.next_start);
      return retryLater(wait || 15000);
    }
    if (st === 0 || st === 408 || st === 429 || st >= 500) {
      showReconnecting();
      return retryLater(Math.max(wait, backoff()));
    }
    fail(t('error'), t('errorHelp', { status: st }), true);
  }

  function backoff() {
    var base = Math.min(10, Math.pow(2, attempts++));    // 1, 2, 4, 8, 10, 10, ...
    return Math.min(10, base * (0.85 + Math.random() * 0.3)) * 1000;
  }

  function retryLater(ms) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, ms);
  }

  // The link broke after setup: clean up and try again with backoff.
  function drop() {
    if (busy || terminal) return;
    teardown(current);
    showReconnecting();
    retryLater(backoff());
  }

  function retryNow() {
    if (busy || terminal || !config) return;
    var st = current && linkState(current.pc);
    if (st === 'connected' || st === 'connecting' || st === 'new') return;
    attempts = 0;
    connect();
  }

  function teardown(s) {
    if (!s) return;
    clearTimeout(s.discTimer);
    clearTimeout(s.connectTimer);
    s.pc.ontrack = s.pc.onicecandidate = s.pc.onconnectionstatechange = s.pc.oniceconnectionstatechange = null;
    try { s.pc.close(); } catch (e) { /* already closed */ }
    if (s.location) {
      fetch(s.location, { method: 'DELETE', headers: authHeaders(), keepalive: true }).catch(function () {});
      s.location = null;
    }
    if (s === current) {
      current = null;
      classroom.pc = null;
      classroom.location = null;
    }
  }

  /* ---------- trickle ICE and Link headers ---------- */

  function trickle(s) {
    if (!s.location || !s.pending.length || !s.pc.localDescription) return;
    if (!s.pending.some(Boolean)) return;      // end-of-candidates alone tells the server nothing useful
    var cands = s.pending.splice(0);
    var frag = sdpFragment(s.pc.localDescription.sdp, cands);
    if (!frag) return;
    fetch(s.location, { method: 'PATCH', headers: authHeaders('application/trickle-ice-sdpfrag'), body: frag })
      .catch(function () {});
  }

  function sdpFragment(sdp, cands) {
    var ufrag = /a=ice-ufrag:(\S+)/.exec(sdp);
    var pwd = /a=ice-pwd:(\S+)/.exec(sdp);
    if (!ufrag || !pwd) return '';
    var end = cands.indexOf(null) >= 0;
    var lines = ['a=ice-ufrag:' + ufrag[1], 'a=ice-pwd:' + pwd[1]];
    sdp.split(/\r?\nm=/).slice(1).forEach(function (section, index) {
      var mid = (/a=mid:(\S+)/.exec(section) || [])[1];
      var mine = cands.filter(function (c) { return c && (c.sdpMid === mid || (c.sdpMid == null && c.sdpMLineIndex === index)); });
      if (!mine.length && !(end && index === 0)) return;
      lines.push('m=' + section.split(/\r?\n/)[0], 'a=mid:' + mid);
      mine.forEach(function (c) { lines.push('a=' + c.candidate); });
      if (end) lines.push('a=end-of-candidates');
    });
    return lines.length > 2 ? lines.join('\r\n') + '\r\n' : '';
  }

  // Link: <turn:host:3478?transport=udp>; rel="ice-server"; username="u"; credential="p"
  function parseIceLinks(header) {
    if (!header) return [];
    return header.split(/,\s*(?=<)/).map(function (part) {
      var m = /^\s*<([^>]+)>(.*)$/.exec(part);
      if (!m || !/rel="?ice-server"?/i.test(m[2])) return null;
      var server = { urls: [m[1]] };
      var user = /;\s*username="([^"]*)"/i.exec(m[2]);
      var cred = /;\s*credential="([^"]*)"/i.exec(m[2]);
      if (user) server.username = user[1];
      if (cred) server.credential = cred[1];
      return server;
    }).filter(Boolean);
  }

  /* ---------- media playback ---------- */

  function play(el) {
    var p = el.play();
    if (p && p.then) {
      p.then(function () { if (el === els.sound) els.unmute.hidden = true; }, function (err) {
        if (err && err.name === 'NotAllowedError') els.unmute.hidden = false;
      });
    }
  }

  function unmute() {
    els.sound.muted = false;
    [els.sound, els.board, els.camera].forEach(function (el) { if (el.srcObject) play(el); });
    if (!els.sound.srcObject) els.unmute.hidden = true;
  }

  function swap() {
    var big = els.board.classList.contains('big') ? els.board : els.camera;
    var pip = big === els.board ? els.camera : els.board;
    big.classList.replace('big', 'pip');
    pip.classList.replace('pip', 'big');
  }

  function updateFullscreenLabel() {
    var on = document.fullscreenElement || document.webkitFullscreenElement;
    els.fullscreen.textContent = t(on ? 'exitFullscreen' : 'fullscreen');
  }

  function toggleFullscreen() {
    var d = document, stage = els.stage;
    if (d.fullscreenElement || d.webkitFullscreenElement) {
      (d.exitFullscreen || d.webkitExitFullscreen).call(d);
      return;
    }
    var req = stage.requestFullscreen || stage.webkitRequestFullscreen;
    if (req) {
      Promise.resolve(req.call(stage)).then(function () {
        if (screen.orientation && screen.orientation.lock) return screen.orientation.lock('landscape');
      }).catch(function () {});
    } else {
      var big = stage.querySelector('video.big');
      if (big.webkitEnterFullscreen) big.webkitEnterFullscreen();   // iPhone: native player
    }
  }

  function keepAwake(on) {
    if (!navigator.wakeLock) return;
    if (on && !wakeLock && document.visibilityState === 'visible') {
      wakeLock = true;
      navigator.wakeLock.request('screen').then(function (lock) {
        wakeLock = lock;
        lock.addEventListener('release', function () { wakeLock = null; });
      }).catch(function () { wakeLock = null; });
    } else if (!on && wakeLock && wakeLock.release) {
      wakeLock.release().catch(function () {});
      wakeLock = null;
    }
  }

  /* ---------- connection quality, every 2 s ---------- */

  var prevStats = null;    // {pc, at, lost, recv, frames: {id: n}, all, stalls}
  var weakTicks = 0;

  async function sampleStats() {
    var s = current;
    if (!s || classroom.state !== 'live' || document.hidden) return;
    var report = await s.pc.getStats();
    var now = { pc: s.pc, at: Date.now(), lost: 0, recv: 0, frames: {}, all: 0, stalls: 0 };
    var hasFrames = false;
    var pairs = {}, selected = null, nominated = null;
    report.forEach(function (r) {
      if (r.type === 'inbound-rtp') {
        now.all += r.packetsReceived || 0;
        if ((r.kind || r.mediaType) !== 'video') return;
        now.lost += Math.max(0, r.packetsLost || 0);
        now.recv += r.packetsReceived || 0;
        if (typeof r.framesDecoded === 'number') { now.frames[r.id] = r.framesDecoded; hasFrames = true; }
      } else if (r.type === 'candidate-pair') {
        pairs[r.id] = r;
        if (r.nominated && r.state === 'succeeded') nominated = r;
      } else if (r.type === 'transport' && r.selectedCandidatePairId) {
        selected = r.selectedCandidatePairId;
      }
    });
    var pair = (selected && pairs[selected]) || nominated;
    var prev = prevStats && prevStats.pc === s.pc ? prevStats : null;
    prevStats = now;
    if (!prev || s !== current) return;
    var dt = (now.at - prev.at) / 1000;
    var dRecv = now.recv - prev.recv, dLost = Math.max(0, now.lost - prev.lost);
    var fps = hasFrames ? 0 : null;
    Object.keys(now.frames).forEach(function (id) {
      if (id in prev.frames) fps = Math.max(fps, (now.frames[id] - prev.frames[id]) / dt);
    });
    now.stalls = now.all === prev.all ? prev.stalls + 1 : 0;
    if (now.stalls >= 6) return drop();    // 12 s without a single packet: the session is dead
    var rtt = pair && typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime : null;
    showQuality(grade(dRecv + dLost ? dLost / (dRecv + dLost) : 1, fps, rtt));
  }

  function grade(loss, fps, rtt) {
    var level = 0;   // 0 good, 1 fair, 2 poor
    level = Math.max(level, loss >= 0.08 ? 2 : loss >= 0.02 ? 1 : 0);
    if (fps !== null) level = Math.max(level, fps < 4 ? 2 : fps < 10 ? 1 : 0);
    if (rtt !== null) level = Math.max(level, rtt >= 0.8 ? 2 : rtt >= 0.35 ? 1 : 0);
    return ['good', 'fair', 'poor'][level];
  }

  function showQuality(level) {
    classroom.quality = level;
    els.quality.hidden = false;
    els.quality.setAttribute('data-level', level);
    els['quality-word'].textContent = t(level);
    weakTicks = level === 'poor' ? weakTicks + 1 : 0;
    showNotice(weakTicks >= 2 ? t('weakHint') : '');
  }

  /* ---------- start ---------- */

  function bindEvents() {
    els.unmute.addEventListener('click', unmute);
    els.swap.addEventListener('click', swap);
    [els.board, els.camera].forEach(function (v) {
      v.addEventListener('click', function () { if (v.classList.contains('pip')) swap(); });
    });
    els.retry.addEventListener('click', function () { terminal = false; attempts = 0; connect(); });
    els.fullscreen.addEventListener('click', toggleFullscreen);
    var canFull = els.stage.requestFullscreen || els.stage.webkitRequestFullscreen || els.board.webkitEnterFullscreen;
    els.fullscreen.hidden = !canFull;
    document.addEventListener('fullscreenchange', updateFullscreenLabel);
    document.addEventListener('webkitfullscreenchange', updateFullscreenLabel);
    window.addEventListener('online', retryNow);
    window.addEventListener('offline', function () { if (classroom.state === 'reconnecting') showReconnecting(); });
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState !== 'visible') return;
      keepAwake(classroom.state === 'live' || classroom.state === 'reconnecting');
      retryNow();
    });
    window.addEventListener('pagehide', function () {
      gen++; busy = 0;
      clearTimeout(retryTimer);
      teardown(current);
    });
    window.addEventListener('pageshow', function (ev) { if (ev.persisted) retryNow(); });
    setInterval(function () { sampleStats().catch(function () {}); }, 2000);
  }

  function start() {
    renderHeader();
    bindEvents();
    if (!config) return fail(t('badPage'), t('badPageHelp'), false);
    if (!window.RTCPeerConnection || !window.fetch || !('addTransceiver' in RTCPeerConnection.prototype)) {
      return fail(t('unsupported'), t('unsupportedHelp'), false);
    }
    connect();
  }

  start();
})();
