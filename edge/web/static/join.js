/* classroom-edge: the pupil's live-lesson page, a WHEP viewer. Plain ES2018, no dependencies.
 * Relay mode (config.relay): the page asks POST /relay/{room} for a Janus grant instead, plays the
 * streaming plugin's offer (janus.js), its camera/board/audio by mid, and beats the service.
 * Offer transceivers, in order: camera video, board video (recvonly), classroom audio (sendrecv:
 * the pupil's microphone when the teacher allows, see talk.js), and the "classroom" data channel.
 * Test hook: window.classroom = {pc, state, config, quality, location, saveData, session, bytesReceived}:
 * quality is the page's own grade of the link ('good' | 'fair' | 'poor', from getStats), session the
 * latest GET of the WHEP session resource (renditions the server chose, its link estimate),
 * saveData the pupil's "save data" choice, bytesReceived the bytes this page received so far;
 * relay is true when the page plays from Janus, janus then {session, handle, mountpoint} and
 * location the service's relay session resource (what the beats POST to). */
(function () {
  'use strict';

  var STRINGS = {
    vi: {
      title: 'Lớp {class} · Học trực tuyến', pageTitle: 'Học trực tuyến', classLabel: 'Lớp {class}',
      hello: 'Xin chào, {name}', board: 'Màn hình bảng', camera: 'Camera lớp học',
      connecting: 'Đang kết nối…', live: 'Đang học trực tiếp', reconnecting: 'Đang kết nối lại…',
      waiting: 'Chưa đến giờ học', ended: 'Buổi học đã kết thúc', error: 'Không vào được lớp học',
      connectingHelp: 'Em chờ một chút nhé.',
      reconnectingHelp: 'Mạng vừa bị ngắt. Trang sẽ tự vào lại lớp.',
      retryHelp: 'Chưa vào được lớp học. Trang sẽ tự thử lại.',
      offlineHelp: 'Điện thoại đang mất mạng. Em hãy kiểm tra Wi-Fi hoặc 4G.',
      nextAt: 'Tiết học tiếp theo bắt đầu lúc {time}.',
      period: 'Tiết {n}', startsIn: 'Bắt đầu sau {left}', startingNow: 'Sắp vào lớp…',
      lessonEnded: 'Tiết {subject} đã kết thúc lúc {time}.',
      autoJoin: 'Trang sẽ tự vào lớp khi đến giờ, em không cần tải lại trang.',
      rewatch: 'Xem lại bài giảng đã ghi',
      pickTitle: 'Em là ai? Chọn tên của em', iAm: 'Em là {name}', change: 'đổi',
      pickHelp: 'Chạm vào tên của em trong danh sách để vào lớp. Điện thoại sẽ nhớ tên này.',
      mute: 'Tắt tiếng', soundOn: 'Bật tiếng',
      removed: 'Em đã được mời ra khỏi tiết học', removedHelp: 'Thầy cô đã mời em ra khỏi tiết học này. Em hãy chờ tiết sau.',
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
      poorHint: 'Mạng yếu — đã giảm chất lượng hình để giữ tiếng.',
      saveData: 'Tiết kiệm dữ liệu', saveDataHelp: 'Hình nhỏ hơn, tốn ít 3G/4G hơn. Tiếng vẫn rõ.',
      qualityLabel: 'Chất lượng:', qHigh: 'Cao', qLow: 'Thấp', qMid: 'Vừa', qPaused: 'Chỉ bảng và tiếng',
      qAudio: 'Chỉ có tiếng', stillsNote: 'Bảng: ảnh tĩnh (chữ vẫn rõ, chậm đổi hình)',
      dataUsed: 'Đã dùng {amount}',
      unmute: 'Chạm để bật tiếng', swap: 'Đổi vị trí hình', fullscreen: 'Phóng to', exitFullscreen: 'Thu nhỏ',
      retry: 'Thử lại', tip: 'Xoay ngang điện thoại để xem bảng to hơn.'
    },
    en: {
      title: 'Class {class} · Live lesson', pageTitle: 'Live lesson', classLabel: 'Class {class}',
      hello: 'Hello, {name}', board: 'Board screen', camera: 'Classroom camera',
      connecting: 'Connecting…', live: 'Live lesson', reconnecting: 'Reconnecting…',
      waiting: 'The lesson has not started yet', ended: 'The lesson has ended', error: 'Cannot join the lesson',
      connectingHelp: 'Please wait a moment.',
      reconnectingHelp: 'The connection dropped. The page will rejoin by itself.',
      retryHelp: 'Could not join yet. The page will try again by itself.',
      offlineHelp: 'Your phone is offline. Please check Wi-Fi or mobile data.',
      nextAt: 'The next lesson starts at {time}.',
      period: 'Period {n}', startsIn: 'Starts in {left}', startingNow: 'Joining…',
      lessonEnded: 'The {subject} lesson ended at {time}.',
      autoJoin: 'The page will join by itself when it starts; no need to reload.',
      rewatch: 'Watch recorded lessons',
      pickTitle: 'Who are you? Pick your name', iAm: 'You are {name}', change: 'change',
      pickHelp: 'Tap your name in the list to join. This phone will remember it.',
      mute: 'Mute', soundOn: 'Sound on',
      removed: 'You were removed from the lesson', removedHelp: 'The teacher removed you from this lesson. Please wait for the next one.',
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
      poorHint: 'Weak network — picture quality lowered to keep the sound.',
      saveData: 'Save data', saveDataHelp: 'Smaller picture, less mobile data. Sound stays clear.',
      qualityLabel: 'Quality:', qHigh: 'High', qLow: 'Low', qMid: 'Medium', qPaused: 'Board and sound only',
      qAudio: 'Sound only', stillsNote: 'Board: still pictures (text stays sharp, changes slowly)',
      dataUsed: 'Data used: {amount}',
      unmute: 'Tap to turn on sound', swap: 'Swap views', fullscreen: 'Full screen', exitFullscreen: 'Exit full screen',
      retry: 'Try again', tip: 'Turn your phone sideways to see the board bigger.'
    }
  };

  var $ = function (id) { return document.getElementById(id); };
  var els = {};
  ['stage', 'board', 'camera', 'sound', 'overlay', 'overlay-title', 'overlay-detail', 'retry', 'unmute',
    'state-text', 'quality', 'quality-word', 'notice', 'fullscreen', 'class-name', 'school', 'pupil',
    'data-panel', 'save-data', 'usage', 'rendition', 'rendition-word', 'stills-note', 'data-used',
    'lesson-info', 'countdown', 'rewatch', 'mute', 'lesson-now']
    .forEach(function (id) { els[id] = $(id); });

  var config = readConfig();
  if (config.recordings && els.rewatch) { els.rewatch.href = config.recordings; els.rewatch.hidden = false; }
  var lang = pickLang(config);
  var S = STRINGS[lang];
  var SAVE_KEY = 'classroom-edge.saveData';
  var classroom = window.classroom = {
    pc: null, state: 'connecting', config: config, quality: null, location: null,
    saveData: initialSaveData(), session: null, bytesReceived: 0,
    relay: !!(config && config.relay), janus: null
  };

  var current = null;     // session being set up or live: {pc, camera, board, audio, location, pending, ...}
  var gen = 0;            // bumped by every attempt and by pagehide; stale async work compares it
  var busy = 0;           // gen of the attempt still negotiating, 0 if none: never two set-ups at once
  var terminal = false;   // no automatic retries (bad link, unknown room, other 4xx)
  var everLive = false, attempts = 0, retryTimer = 0;
  var clockOffset = 0;    // the school's clock minus this phone's (phones are often wrong)
  var me = null;          // on a class link: {key, name} the pupil picked
  var countdownTimer = 0, startsAt = NaN;
  var wakeLock = null, wantAwake = false;

  function t(key, vars) {
    return String(S[key]).replace(/\{(\w+)\}/g, function (m, k) { return vars && k in vars ? vars[k] : m; });
  }

  function readConfig() {
    try {
      var c = JSON.parse($('join-config').textContent);
      return c && typeof c === 'object' && c.whep && c.token ? c : null;
    } catch (e) { return null; }
  }

  // The pupil's last choice on this phone, else the browser's own data saver (Chrome "Lite mode").
  function initialSaveData() {
    try {
      var stored = window.localStorage.getItem(SAVE_KEY);
      if (stored === '1' || stored === '0') return stored === '1';
    } catch (e) { /* storage disabled: fall through */ }
    return !!(navigator.connection && navigator.connection.saveData);
  }

  function pickLang(c) {
    var q = new URLSearchParams(location.search).get('lang');
    if (q === 'en' || q === 'vi') return q;
    return c && c.lang === 'en' ? 'en' : 'vi';
  }

  /* ---------- header and state ---------- */

  function renderHeader() {
    document.documentElement.lang = lang;
    document.querySelectorAll('[data-i18n]').forEach(function (el) { el.textContent = t(el.getAttribute('data-i18n')); });
    var cls = config && config['class'] ? String(config['class']) : '';
    document.title = cls ? t('title', { 'class': cls }) : t('pageTitle');
    els['class-name'].textContent = cls ? t('classLabel', { 'class': cls }) : t('pageTitle');
    els.school.textContent = (config && config.school) || '';
    var name = config && config.pupil && config.pupil.name;
    els.pupil.hidden = !name && !me;
    if (name) els.pupil.textContent = t('hello', { name: name });
    else if (me) {
      els.pupil.textContent = t('iAm', { name: me.name });
      var change = document.createElement('button');
      change.type = 'button';
      change.textContent = t('change');
      change.onclick = function () { me = null; remember(null); teardown(current); showPicker(); };
      els.pupil.appendChild(change);
    }
    els.board.setAttribute('aria-label', t('board'));
    els.camera.setAttribute('aria-label', t('camera'));
    els['save-data'].hidden = classroom.relay;     // Janus relays one rendition: nothing to save
    updateFullscreenLabel();
    renderSaveData();
  }

  // name: picking | connecting | live | reconnecting | waiting | ended | error
  function setState(name, title, detail) {
    classroom.state = name;
    document.body.setAttribute('data-state', name);
    els['state-text'].textContent = els['overlay-title'].textContent = title || t(name);
    els['overlay-detail'].textContent = (detail || '').trim();
    els.overlay.hidden = name === 'live';
    els.retry.hidden = true;
    if (name !== 'waiting') showCountdown(NaN, null);
    if (name !== 'live') { classroom.quality = classroom.session = null; weakTicks = 0; heavyLoss = false; }
    els.quality.hidden = !classroom.quality;
    els['data-panel'].hidden = name === 'error';
    renderSession();
    updateNotice();
    pollSession(name === 'live');
    keepAwake(name === 'live' || name === 'reconnecting');
  }

  // An error the page cannot fix alone; `retry` offers a "Thử lại" button.
  function fail(title, detail, retry) {
    clearTimeout(retryTimer);
    teardown(current);
    terminal = true;
    setState('error', title, detail);
    els.retry.hidden = !retry;
  }

  function showNotice(text) {
    els.notice.textContent = text;
    els.notice.hidden = !text;
  }

  // "2026-11-25T08:05:00+07:00" -> "08:05 hôm nay", in the school's own wall-clock time.
  function formatStart(iso) {
    var m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::[\d.]+)?(Z|[+-]\d\d:?\d\d)?$/.exec(String(iso || ''));
    if (!m) return '';
    var offset = -new Date().getTimezoneOffset();     // no offset given: the phone's own zone
    if (m[6]) {
      var o = m[6] === 'Z' ? '+0000' : m[6].replace(':', '');
      offset = (o[0] === '-' ? -1 : 1) * (parseInt(o.slice(1, 3), 10) * 60 + parseInt(o.slice(3), 10));
    }
    var day = Date.UTC(+m[1], +m[2] - 1, +m[3]);
    var wall = new Date(schoolNow() + offset * 60000);  // school wall clock, read with UTC getters
    var diff = Math.round((day - Date.UTC(wall.getUTCFullYear(), wall.getUTCMonth(), wall.getUTCDate())) / 864e5);
    var when = diff === 0 || diff === 1 ? ' ' + t(diff ? 'tomorrow' : 'today')
      : ', ' + S.weekdays[new Date(day).getUTCDay()] + ' ' + (+m[3]) + '/' + (+m[2]);
    return (m[4] + ':' + m[5] + when).replace(/ /g, '\u00a0');     // keep the time on one line
  }

  // "Tiết 3 · Toán · Cô Lan"
  function describeLesson(lesson) {
    if (!lesson) return '';
    return [lesson.period ? t('period', { n: lesson.period }) : '', lesson.subject, lesson.teacher]
      .filter(Boolean).join(' · ');
  }

  function schoolNow() { return Date.now() + clockOffset; }

  // A 409 problem: {next_start, next_lesson, ended_lesson, now}.
  function showWaiting(problem) {
    var p = problem || {};
    var parsedNow = Date.parse(p.now || '');
    if (!isNaN(parsedNow)) clockOffset = parsedNow - Date.now();
    var next = p.next_lesson, ended = p.ended_lesson;
    var time = formatStart(p.next_start);
    var nextText = time ? t('nextAt', { time: time }) : '';
    if (everLive || (ended && !next)) {
      var endedText = ended && ended.subject
        ? t('lessonEnded', { subject: ended.subject, time: formatStart(ended.end).split('\u00a0')[0] }) : '';
      setState('ended', null, [endedText, t('thanks'), nextText].filter(Boolean).join(' '));
      showCountdown(NaN, everLive ? null : next);
      return;
    }
    setState('waiting', null, [nextText, t('autoJoin')].filter(Boolean).join(' '));
    showCountdown(Date.parse(p.next_start || ''), next);
  }

  // Before the bell: what comes, and a countdown that ends in joining by itself.
  function showCountdown(at, lesson) {
    clearInterval(countdownTimer);
    countdownTimer = 0;
    startsAt = at;
    els['lesson-info'].textContent = describeLesson(lesson);
    els['lesson-info'].hidden = !lesson;
    els.countdown.hidden = isNaN(at);
    if (isNaN(at)) return;
    var tick = function () {
      var left = Math.round((startsAt - schoolNow()) / 1000);
      if (left <= 0) { els.countdown.textContent = t('startingNow'); return; }
      var h = Math.floor(left / 3600), m = Math.floor(left / 60) % 60, s = left % 60;
      var pad = function (n) { return (n < 10 ? '0' : '') + n; };
      els.countdown.textContent = t('startsIn', { left: (h ? h + ':' + pad(m) : m) + ':' + pad(s) });
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
  }

  function showReconnecting() {
    var help = navigator.onLine === false ? 'offlineHelp' : everLive ? 'reconnectingHelp' : 'retryHelp';
    setState('reconnecting', null, t(help));
  }

  /* ---------- WebRTC session ---------- */

  function preferH264(transceiver) {
    if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver || !RTCRtpReceiver.getCapabilities) return;
    var caps = RTCRtpReceiver.getCapabilities('video');
    if (!caps || !caps.codecs) return;
    var rank = function (c) {
      var fmtp = c.sdpFmtpLine || '';
      if (!/^video\/h264$/i.test(c.mimeType)) return 9;
      if (!/packetization-mode=1/.test(fmtp)) return 5;
      if (/profile-level-id=42e0/i.test(fmtp)) return 0;    // constrained baseline, what the server sends
      return /profile-level-id=42/i.test(fmtp) ? 1 : 2;
    };
    var codecs = caps.codecs.map(function (c, i) { return { c: c, i: i, r: rank(c) }; });
    if (!codecs.some(function (x) { return x.r < 5; })) return;
    codecs.sort(function (a, b) { return a.r - b.r || a.i - b.i; });
    try { transceiver.setCodecPreferences(codecs.map(function (x) { return x.c; })); } catch (e) { /* keep defaults */ }
  }

  function newSession() {
    var pc, opts = { iceServers: config.ice_servers || [], bundlePolicy: 'max-bundle' };
    try { pc = new RTCPeerConnection(opts); } catch (e) {     // a malformed ICE entry must not lock pupils out
      pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    }
    var s = {
      pc: pc, location: null, pending: [], sent: false, discTimer: 0, connectTimer: 0, dtls: null,
      bytes: 0, patchedAt: 0, relay: classroom.relay, janus: null, beatUrl: null, beatTimer: 0
    };
    pc.onconnectionstatechange = pc.oniceconnectionstatechange = function () { onLinkChange(s); };
    if (s.relay) {      // Janus offers: its transceivers come with the offer, matched by mid in onTrack
      s.camera = s.board = s.audio = null;
      pc.ontrack = function (ev) { if (s === current) onTrack(s, ev); };
      pc.onicecandidate = function (ev) { if (s.sent && s.janus) s.janus.trickle(ev.candidate); };
      return s;
    }
    s.camera = pc.addTransceiver('video', { direction: 'recvonly' });
    s.board = pc.addTransceiver('video', { direction: 'recvonly' });
    // sendrecv: the microphone goes out here (replaceTrack) only when the teacher allows
    s.audio = pc.addTransceiver('audio', { direction: 'sendrecv' });
    s.channel = pc.createDataChannel('classroom');
    if (window.classroomTalk) window.classroomTalk.attach(s);
    preferH264(s.camera);
    preferH264(s.board);
    pc.ontrack = function (ev) { if (s === current) onTrack(s, ev); };
    pc.onicecandidate = function (ev) {
      if (!s.sent) return;             // gathered before the POST: already in the offer
      s.pending.push(ev.candidate);    // null = end-of-candidates
      trickle(s);
    };
    return s;
  }

  function onTrack(s, ev) {
    var tr = ev.transceiver || s.pc.getTransceivers().filter(function (x) { return x.receiver === ev.receiver; })[0];
    if (s.relay) mapRelayTransceivers(s);
    var el = tr === s.camera ? els.camera : tr === s.board ? els.board : ev.track.kind === 'audio' ? els.sound : null;
    if (!el) return;
    el.srcObject = new MediaStream([ev.track]);
    play(el);
  }

  // Janus names its m-lines by the mountpoint's media ids: camera, board, audio (else: in order).
  function mapRelayTransceivers(s) {
    var all = s.pc.getTransceivers(), videos = [];
    all.forEach(function (tr) {
      var kind = tr.receiver.track && tr.receiver.track.kind;
      if (tr.mid === 'camera') s.camera = tr;
      else if (tr.mid === 'board') s.board = tr;
      else if (tr.mid === 'audio' || (kind === 'audio' && !s.audio)) s.audio = tr;
      else if (kind === 'video') videos.push(tr);
    });
    videos.forEach(function (tr) {
      if (!s.camera) s.camera = tr; else if (!s.board && tr !== s.camera) s.board = tr;
    });
  }

  function linkState(pc) {
    if (pc.connectionState) return pc.connectionState;
    var ice = pc.iceConnectionState;     // browsers without connectionState
    return ice === 'checking' ? 'connecting' : ice === 'completed' ? 'connected' : ice;
  }

  function onLinkChange(s) {
    if (s !== current || busy) return;
    var st = linkState(s.pc);
    if (st === 'connected') {
      clearTimeout(s.discTimer);
      clearTimeout(s.connectTimer);
      s.discTimer = 0;
      attempts = 0;
      everLive = true;
      if (s.relay) startBeats(s);
      if (classroom.state !== 'live') { setState('live'); showLessonNow(); }
    } else if (st === 'disconnected') {
      if (!s.discTimer) s.discTimer = setTimeout(function () { if (s === current) drop(); }, 4000);
    } else if (st === 'failed') {
      drop();
    }
  }

  // The server ending the session (lesson over, restart) shows up at once as DTLS close_notify.
  function watchDtls(s) {
    var tr = s.camera || s.pc.getTransceivers()[0];
    var dtls = tr && tr.receiver.transport;
    if (!dtls || !('onstatechange' in dtls)) return;
    s.dtls = dtls;
    dtls.onstatechange = function () {
      if (s === current && (dtls.state === 'closed' || dtls.state === 'failed')) drop();
    };
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

  // Offer, POST, answer. Resolves {status, problem, retryAfter}; throws on network errors and timeouts.
  async function negotiate(s) {
    await s.pc.setLocalDescription(await s.pc.createOffer());
    await waitForGathering(s.pc, 2000);
    s.sent = true;
    var whep = new URL(config.whep, location.href);
    if (classroom.saveData) whep.searchParams.set('save_data', '1');
    if (me) whep.searchParams.set('as', me.key);
    whep = whep.href;
    var ctrl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctrl) ctrl.abort(); }, 15000);
    var res = await fetch(whep, {
      method: 'POST', headers: authHeaders('application/sdp'), body: s.pc.localDescription.sdp,
      cache: 'no-store', signal: ctrl ? ctrl.signal : undefined
    }).finally(function () { clearTimeout(timer); });
    var out = { status: res.status, retryAfter: parseInt(res.headers.get('Retry-After') || '', 10) };
    if (res.status !== 201) {
      out.problem = await res.json().catch(function () { return {}; });
      return out;
    }
    var answer = await res.text();
    var loc = res.headers.get('Location');
    s.location = loc ? new URL(loc, whep).href : null;
    if (s === current) classroom.location = s.location;
    await s.pc.setRemoteDescription({ type: 'answer', sdp: answer });
    watchDtls(s);
    trickle(s);
    return out;
  }

  // The relay session resource: config.relay as a URL, else the WHEP endpoint's sibling.
  function relayEndpoint() {
    if (typeof config.relay === 'string') return new URL(config.relay, location.href);
    var url = new URL(config.whep, location.href);
    url.pathname = url.pathname.replace(/\/whep\/([^/]+)\/?$/, '/relay/$1');
    return url;
  }

  // Relay: a grant from the service (POST /relay/{room}), then Janus's offer and our answer.
  // Resolves like negotiate(); throws on network errors, timeouts and Janus refusing.
  async function negotiateRelay(s) {
    var url = relayEndpoint();
    var base = url.origin + url.pathname.replace(/\/+$/, '');
    url.search = '';
    if (me) url.searchParams.set('as', me.key);
    var ctrl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctrl) ctrl.abort(); }, 15000);
    var res = await fetch(url.href, {
      method: 'POST', headers: authHeaders(), cache: 'no-store', signal: ctrl ? ctrl.signal : undefined
    }).finally(function () { clearTimeout(timer); });
    var out = { status: res.status, retryAfter: parseInt(res.headers.get('Retry-After') || '', 10) };
    if (res.status !== 201) {
      out.problem = await res.json().catch(function () { return {}; });
      if (res.status === 409 && !out.problem.now) out.problem = await withOutlook(out.problem);
      return out;
    }
    var grant = await res.json();
    var loc = res.headers.get('Location');
    s.beatUrl = loc ? new URL(loc, url).href : base + '/' + encodeURIComponent(grant.session);
    s.beatEvery = Math.max(5, Number(grant.beat_seconds) || 30) * 1000;
    if (s === current) classroom.location = s.beatUrl;
    if (grant.ice_servers) {
      try { s.pc.setConfiguration({ iceServers: grant.ice_servers, bundlePolicy: 'max-bundle' }); } catch (e) { /* keep the page's */ }
    }
    var lost = function () { if (s === current) drop(); };
    s.janus = await window.classroomJanus.open(new URL(grant.janus, location.href).href, grant.token, {
      onLost: lost,
      onHangup: lost,
      onCandidate: function (c) {
        s.pc.addIceCandidate(c && c.candidate ? c : null).catch(function () {});
      }
    });
    if (s === current) classroom.janus = { session: s.janus.session, handle: s.janus.handle, mountpoint: grant.mountpoint };
    var offer = await s.janus.watch(grant.mountpoint);
    await s.pc.setRemoteDescription(offer);
    mapRelayTransceivers(s);
    await s.pc.setLocalDescription(await s.pc.createAnswer());
    await waitForGathering(s.pc, 2000);
    s.sent = true;
    await s.janus.start(s.pc.localDescription);
    if (s.pc.iceGatheringState === 'complete') s.janus.trickle(null);
    watchDtls(s);
    return out;
  }

  // The room's outlook {live, next, ended, now} from GET /api/rooms/{room}/now; null on failure.
  async function fetchOutlook() {
    var url = new URL(config.whep, location.href);
    url.pathname = url.pathname.replace(/\/whep\/([^/]+)\/?$/, '/api/rooms/$1/now');
    var ctrl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctrl) ctrl.abort(); }, 5000);
    try {
      var res = await fetch(url.href, { headers: authHeaders(), cache: 'no-store', signal: ctrl ? ctrl.signal : undefined });
      return res.status === 200 ? await res.json() : null;
    } catch (e) {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  // A 409 without the lesson outlook (next, ended, the school's clock): ask the room for it.
  async function withOutlook(problem) {
    var o = await fetchOutlook();
    if (!o) return problem;
    return Object.assign({}, problem, {
      now: o.now, next_lesson: o.next, ended_lesson: o.ended,
      next_start: problem.next_start || (o.next && o.next.start) || null
    });
  }

  // Tell the service the pupil still watches; 404: the session is gone, the next POST says why.
  function startBeats(s) {
    if (s.beatTimer || !s.beatUrl) return;
    beat(s);
    s.beatTimer = setInterval(function () { beat(s); }, s.beatEvery);
  }

  function beat(s) {
    if (!s.beatUrl || navigator.onLine === false) return;
    fetch(s.beatUrl, { method: 'POST', headers: authHeaders(), cache: 'no-store' }).then(function (res) {
      if (res.status !== 404 || s !== current) return;
      s.beatUrl = null;
      drop();
    }).catch(function () { /* offline: the link checks notice */ });
  }

  async function connect() {
    if (busy || terminal || !config) return;
    clearTimeout(retryTimer);
    var my = busy = ++gen;
    teardown(current);
    if (classroom.state !== 'waiting' && classroom.state !== 'ended') {
      if (everLive || attempts > 0) showReconnecting(); else setState('connecting', null, t('connectingHelp'));
    }
    var s = null, result;
    try {
      s = current = newSession();
      classroom.pc = s.pc;
      result = await (s.relay ? negotiateRelay(s) : negotiate(s));
    } catch (e) {
      result = { status: 0 };     // network error, timeout or an unusable answer
    }
    if (busy === my) busy = 0;
    if (my !== gen) return teardown(s);     // the page was hidden meanwhile
    handleResult(s, result);
  }

  function handleResult(s, r) {
    var st = r.status;
    if (st === 201) {
      s.connectTimer = setTimeout(function () { if (s === current) drop(); }, 20000);
      return onLinkChange(s);     // it may be connected already
    }
    teardown(s);
    var wait = r.retryAfter > 0 ? Math.min(Math.max(r.retryAfter, 5), 60) * 1000 : 0;
    if (st === 403 && r.problem && r.problem.title === 'Removed from the lesson') {
      return fail(t('removed'), t('removedHelp'), false);
    }
    if (st === 401 || st === 403) return fail(t('error'), t('badLinkHelp'), false);
    if (st === 404) return fail(t('error'), t('noRoomHelp'), false);
    if (st === 409) {           // no lesson live: ask again at the bell, and at least every 15 s
      attempts = 0;
      showWaiting(r.problem);
      var untilBell = startsAt - schoolNow() + 500;
      var poll = r.retryAfter > 0 ? Math.min(r.retryAfter, 60) * 1000 : 15000;
      return retryLater(Math.max(1000, isNaN(untilBell) ? poll : Math.min(poll, untilBell)));
    }
    if (st === 0 || st === 408 || st === 429 || st >= 500) {
      showReconnecting();
      return retryLater(Math.max(wait, backoff()));
    }
    fail(t('error'), t('errorHelp', { status: st }), true);
  }

  function backoff() {
    var base = Math.min(10, Math.pow(2, attempts++));     // 1, 2, 4, 8, 10, 10, ... s
    return Math.min(10, base * (0.85 + Math.random() * 0.3)) * 1000;
  }

  function retryLater(ms) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, ms);
  }

  // The link broke after set-up: close it and start again with backoff.
  function drop() {
    if (busy || terminal) return;
    teardown(current);
    showReconnecting();
    retryLater(backoff());
  }

  // Network is back, or the page is visible again: do not wait for the backoff timer.
  function retryNow() {
    if (busy || terminal || !config) return;
    var st = current && linkState(current.pc);
    if (st === 'connected' || st === 'connecting' || st === 'new') return;
    attempts = 0;
    connect();
  }

  function teardown(s) {
    if (!s) return;
    bytesBase += s.bytes;     // what this peer connection received still counts
    s.bytes = 0;
    clearTimeout(s.discTimer);
    clearTimeout(s.connectTimer);
    if (window.classroomTalk) window.classroomTalk.detach(s);
    s.pc.ontrack = s.pc.onicecandidate = s.pc.onconnectionstatechange = s.pc.oniceconnectionstatechange = null;
    if (s.dtls) s.dtls.onstatechange = null;
    try { s.pc.close(); } catch (e) { /* already closed */ }
    clearInterval(s.beatTimer);
    if (s.janus) { s.janus.close(); s.janus = null; }
    if (s.beatUrl) {
      fetch(s.beatUrl, { method: 'DELETE', headers: authHeaders(), keepalive: true }).catch(function () {});
      s.beatUrl = null;
    }
    if (s.location) {
      fetch(s.location, { method: 'DELETE', headers: authHeaders(), keepalive: true }).catch(function () {});
      s.location = null;
    }
    if (s === current) {
      current = classroom.pc = classroom.location = classroom.janus = null;
    }
  }

  // Candidates found after the POST go to the session with PATCH (RFC 8840 SDP fragment).
  function trickle(s) {
    if (!s.location || !s.pending.some(Boolean)) return;
    var cands = s.pending.splice(0), sdp = s.pc.localDescription.sdp;
    var ufrag = /a=ice-ufrag:(\S+)/.exec(sdp), pwd = /a=ice-pwd:(\S+)/.exec(sdp);
    if (!ufrag || !pwd) return;
    var lines = ['a=ice-ufrag:' + ufrag[1], 'a=ice-pwd:' + pwd[1]];
    sdp.split(/\r?\nm=/).slice(1).forEach(function (section, index) {
      var mid = (/a=mid:(\S+)/.exec(section) || [])[1];
      var mine = cands.filter(function (c) { return c && (c.sdpMid === mid || (c.sdpMid == null && c.sdpMLineIndex === index)); });
      if (!mine.length) return;
      lines.push('m=' + section.split(/\r?\n/)[0], 'a=mid:' + mid);
      mine.forEach(function (c) { lines.push('a=' + c.candidate); });
      if (cands.indexOf(null) >= 0) lines.push('a=end-of-candidates');
    });
    fetch(s.location, {
      method: 'PATCH', headers: authHeaders('application/trickle-ice-sdpfrag'), body: lines.join('\r\n') + '\r\n'
    }).catch(function () {});
  }

  /* ---------- media, swap, full screen, screen wake ---------- */

  function play(el) {
    var p = el.play();
    if (!p || !p.then) return;
    p.then(function () { if (el === els.sound) { els.unmute.hidden = true; showMute(); } }, function (err) {
      if (err && err.name === 'NotAllowedError') els.unmute.hidden = false;   // autoplay policy: ask for a tap
    });
  }

  // Once sound plays: a button to turn it off and on again (a pupil in a quiet room)
  function showMute() {
    els.mute.hidden = false;
    els.mute.textContent = els.sound.muted ? t('soundOn') : t('mute');
    els.mute.setAttribute('aria-pressed', els.sound.muted ? 'true' : 'false');
  }

  function toggleMute() {
    els.sound.muted = !els.sound.muted;
    if (!els.sound.muted && els.sound.paused) play(els.sound);
    showMute();
  }

  // "Tiết 2 · Toán · Nguyễn Thị Lan" under the school's name while live
  var lessonTimer = 0;
  async function showLessonNow() {
    clearTimeout(lessonTimer);
    if (classroom.state !== 'live') { els['lesson-now'].hidden = true; return; }
    var o = await fetchOutlook();
    var live = o ? o.live : null;
    els['lesson-now'].textContent = describeLesson(live);
    els['lesson-now'].hidden = !live || classroom.state !== 'live';
    lessonTimer = setTimeout(showLessonNow, 120000);    // the next period may follow on
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
    if (d.fullscreenElement || d.webkitFullscreenElement) return (d.exitFullscreen || d.webkitExitFullscreen).call(d);
    var req = stage.requestFullscreen || stage.webkitRequestFullscreen;
    if (req) {
      Promise.resolve(req.call(stage)).then(function () {
        if (screen.orientation && screen.orientation.lock) return screen.orientation.lock('landscape');
      }).catch(function () {});
    } else {
      var big = stage.querySelector('video.big');
      if (big.webkitEnterFullscreen) big.webkitEnterFullscreen();    // iPhone: the native player
    }
  }

  // A 45-minute lesson without touching the phone must not let the screen sleep.
  function keepAwake(on) {
    wantAwake = on;
    if (!navigator.wakeLock) return;
    if (on && !wakeLock && document.visibilityState === 'visible') {
      wakeLock = navigator.wakeLock.request('screen').then(function (lock) {
        lock.addEventListener('release', function () { wakeLock = null; });
        if (!wantAwake) lock.release();
        return lock;
      }, function () { wakeLock = null; });
    } else if (!on && wakeLock) {
      wakeLock.then(function (lock) { if (lock) lock.release(); });
      wakeLock = null;
    }
  }

  /* ---------- connection quality, every 2 s ---------- */

  var prevStats = null, weakTicks = 0, heavyLoss = false, bytesBase = 0;

  async function sampleStats() {
    var s = current;
    if (!s || classroom.state !== 'live' || document.hidden) return;
    var report = await s.pc.getStats();
    var now = { pc: s.pc, at: Date.now(), lost: 0, recv: 0, frames: {}, all: 0, stalls: 0 };
    var pairs = {}, selected = null, nominated = null, fps = null, transportBytes = null, rtpBytes = 0;
    report.forEach(function (r) {
      if (r.type === 'inbound-rtp') {
        now.all += r.packetsReceived || 0;
        rtpBytes += (r.bytesReceived || 0) + (r.headerBytesReceived || 0);
        if ((r.kind || r.mediaType) !== 'video') return;
        now.lost += Math.max(0, r.packetsLost || 0);
        now.recv += r.packetsReceived || 0;
        if (typeof r.framesDecoded === 'number') now.frames[r.id] = r.framesDecoded;
      } else if (r.type === 'candidate-pair') {
        pairs[r.id] = r;
        if (r.nominated && r.state === 'succeeded') nominated = r;
      } else if (r.type === 'transport') {
        if (typeof r.bytesReceived === 'number') transportBytes = (transportBytes || 0) + r.bytesReceived;
        if (r.selectedCandidatePairId) selected = r.selectedCandidatePairId;
      }
    });
    if (s !== current) return;
    s.bytes = Math.max(s.bytes, transportBytes !== null ? transportBytes : rtpBytes);
    showDataUsed();
    var prev = prevStats && prevStats.pc === s.pc ? prevStats : null;
    prevStats = now;
    if (!prev || s !== current) return;
    var dt = (now.at - prev.at) / 1000;
    Object.keys(now.frames).forEach(function (id) {    // best video stream; the board runs at 5-10 fps
      if (id in prev.frames) fps = Math.max(fps || 0, (now.frames[id] - prev.frames[id]) / dt);
    });
    now.stalls = now.all === prev.all ? prev.stalls + 1 : 0;
    if (now.stalls >= 6) return drop();      // 12 s without a single packet: the session is dead
    var dRecv = now.recv - prev.recv, dLost = Math.max(0, now.lost - prev.lost);
    var pair = (selected && pairs[selected]) || nominated;
    var rtt = pair && typeof pair.currentRoundTripTime === 'number' ? pair.currentRoundTripTime : null;
    var loss = dRecv + dLost ? dLost / (dRecv + dLost) : 1;
    heavyLoss = loss >= 0.1;
    showQuality(grade(loss, fps, rtt));
  }

  function grade(loss, fps, rtt) {
    var level = loss >= 0.08 ? 2 : loss >= 0.02 ? 1 : 0;    // 0 good, 1 fair, 2 poor
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
    updateNotice();
  }

  // Weak link, by the server's word (recent loss or congestion) or by the page's own stats.
  function updateNotice() {
    if (classroom.state !== 'live') return showNotice('');
    var srv = classroom.session;
    if (!(srv && srv.poor) && !heavyLoss && weakTicks < 2) return showNotice('');
    var lowered = srv && srv.video && (srv.level < srv.levels - 1 || srv.video.camera === null);
    showNotice(t(lowered ? 'poorHint' : 'weakHint'));
  }

  /* ---------- save data, the renditions the server chose, data used ---------- */

  // MB as phones count them (10^6 bytes), one decimal, with the locale's decimal comma.
  function formatBytes(bytes) {
    var gb = bytes >= 999.95e6, value = (bytes / (gb ? 1e9 : 1e6)).toFixed(1);
    return (lang === 'vi' ? value.replace('.', ',') : value) + '\u00a0' + (gb ? 'GB' : 'MB');
  }

  function showDataUsed() {
    var total = bytesBase + (current ? current.bytes : 0);
    classroom.bytesReceived = total;
    els['data-used'].hidden = !total;
    if (total) els['data-used'].textContent = t('dataUsed', { amount: formatBytes(total) });
    els.usage.hidden = els.rendition.hidden && els['data-used'].hidden;
  }

  function renderSaveData() {
    var on = classroom.saveData;
    els['save-data'].setAttribute('aria-checked', on ? 'true' : 'false');
    document.body.setAttribute('data-save', on ? 'on' : 'off');
  }

  function setSaveData(on) {
    classroom.saveData = on;
    try { window.localStorage.setItem(SAVE_KEY, on ? '1' : '0'); } catch (e) { /* not remembered */ }
    renderSaveData();
    if (current) sendSaveData(current);     // no session yet: the next POST carries it
  }

  // PATCH the wish on the session; the poll re-sends it if the server does not show it.
  function sendSaveData(s) {
    if (!s.location) return;
    s.patchedAt = Date.now();
    fetch(s.location, {
      method: 'PATCH', headers: authHeaders('application/json'), body: JSON.stringify({ save_data: classroom.saveData }),
      cache: 'no-store'
    }).then(function (res) {
      if (res.status !== 204) throw new Error('PATCH save_data: HTTP ' + res.status);
      if (s === current && classroom.state === 'live') pollSession(true);
    }).catch(function (e) {
      s.patchedAt = 0;
      if (window.console) console.warn(String(e));
    });
  }

  var pollGen = 0, pollTimer = 0, pollCtrl = null;

  // GET the session resource now and then every 2 s while live; `on` false stops it.
  function pollSession(on) {
    var my = ++pollGen;
    clearTimeout(pollTimer);
    if (pollCtrl) pollCtrl.abort();
    pollCtrl = null;
    if (!on) return;
    (function tick() {
      fetchSession().catch(function () {}).then(function () {
        if (my === pollGen) pollTimer = setTimeout(tick, 2000);
      });
    })();
  }

  async function fetchSession() {
    var s = current;
    if (!s || !s.location || classroom.state !== 'live' || document.hidden || navigator.onLine === false) return;
    var ctrl = pollCtrl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctrl) ctrl.abort(); }, 5000);
    try {
      var res = await fetch(s.location, {
        headers: authHeaders(), cache: 'no-store', signal: ctrl ? ctrl.signal : undefined
      });
      if (res.status !== 200) return;
      var state = await res.json();
      if (s !== current || classroom.state !== 'live' || !state || !state.video) return;
      classroom.session = state;
      renderSession();
      updateNotice();
      if (state.save_data !== classroom.saveData && Date.now() - s.patchedAt > 3000) sendSaveData(s);
    } finally {
      clearTimeout(timer);
      if (pollCtrl === ctrl) pollCtrl = null;
    }
  }

  var RENDITION_WORDS = { high: 'qHigh', hd: 'qHigh', medium: 'qMid', mid: 'qMid', low: 'qLow', sd: 'qLow' };

  function renderSession() {
    var srv = classroom.session, video = srv && srv.video;
    els.rendition.hidden = !video;
    els['stills-note'].hidden = !(video && video.board === 'stills');
    var cameraOff = !!video && video.camera === null;
    document.body.setAttribute('data-camera', cameraOff ? 'off' : 'on');
    els.usage.hidden = els.rendition.hidden && els['data-used'].hidden;
    if (!video) return;
    var word;
    if (video.camera === null) word = t(video.board === null ? 'qAudio' : 'qPaused');
    else word = RENDITION_WORDS.hasOwnProperty(video.camera) ? t(RENDITION_WORDS[video.camera]) : String(video.camera);
    els['rendition-word'].textContent = word;
    els.rendition.setAttribute('data-camera', video.camera === null ? 'off' : String(video.camera));
    if (cameraOff && els.camera.classList.contains('big')) swap();     // a frozen camera must not fill the stage
  }

  /* ---------- start ---------- */

  function bindEvents() {
    els.unmute.addEventListener('click', unmute);
    els.mute.addEventListener('click', toggleMute);
    $('swap').addEventListener('click', swap);
    [els.board, els.camera].forEach(function (v) {
      v.addEventListener('click', function () { if (v.classList.contains('pip')) swap(); });
    });
    els.retry.addEventListener('click', function () { terminal = false; attempts = 0; connect(); });
    els.fullscreen.addEventListener('click', toggleFullscreen);
    els['save-data'].addEventListener('click', function () { setSaveData(!classroom.saveData); });
    els.fullscreen.hidden = !(els.stage.requestFullscreen || els.stage.webkitRequestFullscreen || els.board.webkitEnterFullscreen);
    document.addEventListener('fullscreenchange', updateFullscreenLabel);
    document.addEventListener('webkitfullscreenchange', updateFullscreenLabel);
    window.addEventListener('online', retryNow);
    window.addEventListener('offline', function () { if (classroom.state === 'reconnecting') showReconnecting(); });
    document.addEventListener('visibilitychange', function () {
      if (document.visibilityState !== 'visible') return;
      keepAwake(wantAwake);
      retryNow();
    });
    window.addEventListener('pagehide', function () {
      gen++;
      busy = 0;
      clearTimeout(retryTimer);
      teardown(current);
    });
    window.addEventListener('pageshow', function (ev) { if (ev.persisted) retryNow(); });
    setInterval(function () { sampleStats().catch(function () {}); }, 2000);
  }

  // A class link: the pupil picks their name once (remembered on this phone); their
  // attendance then counts, marked as not verified.
  function pickKey() { return 'classroom-edge-me-' + (config ? config['class'] : ''); }

  function remember(choice) {
    try {
      if (choice) window.localStorage.setItem(pickKey(), choice.key); else window.localStorage.removeItem(pickKey());
    } catch (e) { /* not remembered */ }
  }

  function rememberedChoice() {
    var list = (config && config.classmates) || [];
    var key = null;
    try { key = window.localStorage.getItem(pickKey()); } catch (e) { /* storage disabled */ }
    return list.filter(function (c) { return c.key === key; })[0] || null;
  }

  function showPicker() {
    var box = $('picker'), list = $('picker-list');
    $('picker-title').hidden = true;     // the overlay says it already
    list.textContent = '';
    (config.classmates || []).forEach(function (c) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'btn';
      b.textContent = c.name;
      b.onclick = function () {
        me = c;
        remember(c);
        box.hidden = true;
        renderHeader();
        connect();
      };
      list.appendChild(b);
    });
    box.hidden = false;
    renderHeader();
    setState('picking', t('pickTitle'), t('pickHelp'));
  }

  function start() {
    me = rememberedChoice();
    renderHeader();
    bindEvents();
    if (!config) return fail(t('badPage'), t('badPageHelp'), false);
    if (!window.RTCPeerConnection || !window.fetch || !('addTransceiver' in RTCPeerConnection.prototype) ||
        (classroom.relay && !window.classroomJanus)) {
      return fail(t('unsupported'), t('unsupportedHelp'), false);
    }
    if (!config.pupil && !me && config.classmates && config.classmates.length) return showPicker();
    connect();
  }

  start();
})();
