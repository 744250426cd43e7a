/* classroom-edge: taking part in the lesson from home, on the classroom channel (Server-Sent
 * Events from the service, POSTs to it), whatever path the picture takes (WHEP or Janus).
 * Raise or lower a hand, send a message to the teacher (only the teacher sees it), and, when
 * the teacher allows, speak: the pupil's microphone is published for that turn only (WHIP) and
 * plays through the classroom speakers. Loaded before join/main.js, whose connection calls
 * `await window.classroomTalk.attach(session, config, pick)` for every media session it makes
 * (the channel opens once and outlives media reconnects) and `leave()` when the page goes.
 * Test hook: window.classroomTalk.status = {open, hand, speaking, allowed, sent, channel}. */
(function () {
  'use strict';

  var vi = document.documentElement.lang !== 'en';
  var T = vi ? {
    hand: 'Giơ tay', handDown: 'Hạ tay', handUp: 'Em đang giơ tay, thầy cô sẽ thấy.',
    placeholder: 'Nhắn thầy cô…', send: 'Gửi', sent: 'Đã gửi tin nhắn cho thầy cô.',
    allowed: 'Thầy cô mời em phát biểu.', micOn: 'Bật micro để nói', micOff: 'Tắt micro',
    speaking: 'Em đang nói, cả lớp nghe thấy em.', stopped: 'Micro đã tắt.',
    micDenied: 'Không mở được micro. Em hãy cho phép trình duyệt dùng micro.',
    offline: 'Chưa gửi được: đang kết nối lại.',
    insecure: 'Trình duyệt chỉ cho dùng micro trên trang bảo mật (https). Em hãy báo thầy cô.'
  } : {
    hand: 'Raise hand', handDown: 'Lower hand', handUp: 'Your hand is up; the teacher can see it.',
    placeholder: 'Message to the teacher…', send: 'Send', sent: 'Message sent to the teacher.',
    allowed: 'The teacher invites you to speak.', micOn: 'Turn on the microphone', micOff: 'Turn off the microphone',
    speaking: 'You are speaking; the class can hear you.', stopped: 'Microphone off.',
    micDenied: 'Could not open the microphone. Please allow the browser to use it.',
    offline: 'Not sent: reconnecting.',
    insecure: 'The browser allows the microphone only on a secure (https) page. Please tell your teacher.'
  };

  var OPEN_TIMEOUT = 10000;   // ms: a channel that cannot open in time is tried again later
  var status = { open: false, hand: false, speaking: false, allowed: false, sent: 0, channel: null };
  var config = null, pick = null;
  var chan = null;      // {id, url, source, opening}: the classroom channel
  var talk = null;      // {pc, location}: the microphone published for this turn
  var micTrack = null;
  var heardAllowed = false;   // status.allowed as last announced (classroom:allowed)
  var device = (function () {
    var id = null;
    try { id = sessionStorage.getItem('ce-device'); } catch (e) { /* private mode */ }
    if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
      var bytes = new Uint8Array(12);
      crypto.getRandomValues(bytes);
      id = Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
      try { sessionStorage.setItem('ce-device', id); } catch (e) { /* kept for this page only */ }
    }
    return id;
  })();
  var $ = function (id) { return document.getElementById(id); };

  function note(text) { var el = $('talk-note'); if (el) el.textContent = text || ''; }

  function render() {
    var box = $('talk');
    if (!box) return;
    box.hidden = !status.open;
    var hand = $('hand');
    hand.textContent = status.hand ? T.handDown : T.hand;
    hand.setAttribute('aria-pressed', String(status.hand));
    var mic = $('mic');
    mic.hidden = !status.allowed;
    mic.textContent = status.speaking ? T.micOff : T.micOn;
    mic.setAttribute('aria-pressed', String(status.speaking));
    if (status.allowed !== heardAllowed) {     // the page's player hears the ducked mix meanwhile
      heardAllowed = status.allowed;
      document.dispatchEvent(new CustomEvent('classroom:allowed', { detail: heardAllowed }));
    }
  }

  function headers(type) {
    var h = { Authorization: 'Bearer ' + config.token };
    if (type) h['Content-Type'] = type;
    return h;
  }

  // The channel, opened once (a reconnect of the media keeps it). Resolves its id, or null.
  function openChannel() {
    if (!config || !config.classroom) return Promise.resolve(null);
    if (chan) return chan.opening;
    var mine = chan = { id: null, url: null, source: null };
    var url = new URL(config.classroom, location.href);
    if (pick) url.searchParams.set('as', pick);
    var ctrl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctrl) ctrl.abort(); }, OPEN_TIMEOUT);     // the media waits for it
    mine.opening = fetch(url.href, {
      method: 'POST', headers: headers('application/json'), body: JSON.stringify({ device: device }), cache: 'no-store',
      signal: ctrl ? ctrl.signal : undefined
    }).then(function (res) {
      clearTimeout(timer);
      if (res.status !== 201) throw new Error('channel ' + res.status);
      return res.json();
    }).then(function (body) {
      if (chan !== mine) return null;
      mine.id = status.channel = body.channel;
      mine.url = new URL(url.pathname + '/' + body.channel, location.href).href;
      listen(mine, new URL(body.events, location.href).href);
      return mine.id;
    }).catch(function () {
      clearTimeout(timer);
      if (chan === mine) chan = null;     // the next media session tries again
      return null;
    });
    return mine.opening;
  }

  function listen(mine, url) {
    var source = mine.source = new EventSource(url);
    source.onopen = function () {
      if (chan !== mine) return;
      status.open = true;
      if (status.hand) send({ type: 'hand', up: true });     // a new channel keeps the hand up
      render();
    };
    source.onmessage = function (ev) { if (chan === mine) onMessage(ev.data); };
    source.onerror = function () {
      if (chan !== mine) return;
      status.open = false;
      render();
      if (source.readyState === 2) {     // CLOSED: the channel is gone (404): open a new one
        closeChannel(false);
        setTimeout(openChannel, 2000);
      }                                  // else the browser reconnects by itself
    };
  }

  function closeChannel(goodbye) {
    var mine = chan;
    chan = null;
    status.open = false;
    status.channel = null;
    if (!mine) return;
    if (mine.source) mine.source.close();
    if (goodbye && mine.url) {
      fetch(mine.url, { method: 'DELETE', headers: headers(), keepalive: true }).catch(function () {});
    }
  }

  function send(message) {
    if (!chan || !chan.url || !status.open) { note(T.offline); return false; }
    fetch(chan.url, { method: 'POST', headers: headers('application/json'), body: JSON.stringify(message) })
      .then(function (res) { if (res.status === 429) note(T.offline); })
      .catch(function () { note(T.offline); });
    return true;
  }

  function stopMic() {
    if (micTrack) { micTrack.stop(); micTrack = null; }
    if (talk) {
      try { talk.pc.close(); } catch (e) { /* closed */ }
      if (talk.location) fetch(talk.location, { method: 'DELETE', headers: headers(), keepalive: true }).catch(function () {});
      talk = null;
    }
    status.speaking = false;
  }

  function gathered(pc, ms) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === 'complete') return resolve();
      var timer = setTimeout(resolve, ms);
      pc.addEventListener('icegatheringstatechange', function () {
        if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
      });
    });
  }

  // The turn to speak: the microphone goes to the service (WHIP) until the turn ends.
  async function startMic() {
    if (!navigator.mediaDevices || !window.isSecureContext) { note(T.insecure); return; }
    if (!chan || !chan.id) { note(T.offline); return; }
    try {
      var stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }
      });
      micTrack = stream.getAudioTracks()[0];
      var pc = new RTCPeerConnection({ iceServers: config.ice_servers || [], bundlePolicy: 'max-bundle' });
      talk = { pc: pc, location: null };
      pc.addTransceiver(micTrack, { direction: 'sendonly' });
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 2000);
      var url = new URL(config.whip, location.href);
      url.searchParams.set('channel', chan.id);
      var res = await fetch(url.href, { method: 'POST', headers: headers('application/sdp'), body: pc.localDescription.sdp });
      if (res.status !== 201) throw new Error('whip ' + res.status);
      var where = res.headers.get('Location');
      if (talk && talk.pc === pc) talk.location = where ? new URL(where, url.href).href : null;
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      status.speaking = true;
      note(T.speaking);
    } catch (e) {
      stopMic();
      note(T.micDenied);
    }
    render();
  }

  function onMessage(data) {
    var m;
    try { m = JSON.parse(data); } catch (e) { return; }
    if (!m || typeof m.type !== 'string') return;
    if (m.type === 'hello') { status.allowed = !!m.speak; if (m.hand) status.hand = true; }
    else if (m.type === 'hand') { status.hand = !!m.up; if (status.hand) note(T.handUp); }
    else if (m.type === 'sent') { status.sent += 1; note(T.sent); }
    else if (m.type === 'speak') {
      status.allowed = !!m.allowed;
      if (status.allowed) note(T.allowed); else { if (status.speaking) note(T.stopped); stopMic(); }
    } else if (m.type === 'rejoin') {       // the service lost our media session: join again now
      document.dispatchEvent(new CustomEvent('classroom:rejoin'));
    } else if (m.type === 'removed' || m.type === 'ended') {
      stopMic();
      status.allowed = status.hand = false;
      closeChannel(false);
      if (m.type === 'removed') document.dispatchEvent(new CustomEvent('classroom:removed'));
    }
    render();
  }

  // A media session is being made: the channel it belongs to (opened now if need be).
  function attach(s, cfg, picked) {
    config = cfg;
    if (picked !== pick) { closeChannel(true); pick = picked; }
    render();
    return openChannel();
  }

  // The page goes away: the turn and the channel end.
  function leave() {
    stopMic();
    status.allowed = false;
    closeChannel(true);
    render();
  }

  function bind() {
    $('hand').addEventListener('click', function () { send({ type: 'hand', up: !status.hand }); });
    $('message-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var input = $('message-text');
      var text = input.value.trim();
      if (text && send({ type: 'message', text: text.slice(0, 300) })) input.value = '';
    });
    $('mic').addEventListener('click', function () {
      if (status.speaking) { stopMic(); note(T.stopped); render(); } else startMic();
    });
    $('message-text').setAttribute('placeholder', T.placeholder);
    $('send').textContent = T.send;
    render();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', bind); else bind();
  window.classroomTalk = { attach: attach, leave: leave, status: status };
})();
