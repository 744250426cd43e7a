/* classroom-edge: taking part in the lesson from home, over the class data channel.
 * Raise or lower a hand, send a message to the teacher (only the teacher sees it), and, when
 * the teacher allows, speak: the pupil's microphone goes out on the audio m-line (sendrecv)
 * and plays through the classroom speakers. Loaded before join/main.js, whose connection calls
 * window.classroomTalk.attach(session) for every peer connection it makes.
 * Test hook: window.classroomTalk.status = {open, hand, speaking, allowed, sent}. */
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

  var status = { open: false, hand: false, speaking: false, allowed: false, sent: 0 };
  var current = null;   // the session whose channel is in use
  var micTrack = null;
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
  }

  function send(message) {
    var ch = current && current.channel;
    if (!ch || ch.readyState !== 'open') { note(T.offline); return false; }
    ch.send(JSON.stringify(message));
    return true;
  }

  function stopMic() {
    if (micTrack) { micTrack.stop(); micTrack = null; }
    if (current && current.audio) current.audio.sender.replaceTrack(null).catch(function () {});
    status.speaking = false;
  }

  async function startMic() {
    if (!current || !current.audio) return;
    if (!navigator.mediaDevices || !window.isSecureContext) { note(T.insecure); return; }
    try {
      var stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }
      });
      micTrack = stream.getAudioTracks()[0];
      await current.audio.sender.replaceTrack(micTrack);
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
    if (m.type === 'hand') { status.hand = !!m.up; if (status.hand) note(T.handUp); }
    else if (m.type === 'sent') { status.sent += 1; note(T.sent); }
    else if (m.type === 'speak') {
      status.allowed = !!m.allowed;
      if (status.allowed) note(T.allowed); else { if (status.speaking) note(T.stopped); stopMic(); }
    } else if (m.type === 'removed') {
      stopMic();
      status.allowed = status.hand = false;
    }
    render();
  }

  function attach(s) {
    current = s;
    status.open = false;
    s.channel.onopen = function () {
      if (s !== current) return;
      status.open = true;
      if (status.hand) send({ type: 'hand', up: true });     // a rejoin keeps the hand up
      render();
    };
    s.channel.onclose = function () { if (s === current) { status.open = false; render(); } };
    s.channel.onmessage = function (ev) { if (s === current) onMessage(ev.data); };
    render();
  }

  function detach(s) {
    if (s !== current) return;
    stopMic();
    status.open = status.allowed = false;
    try { s.channel.close(); } catch (e) { /* closed with the connection */ }
    current = null;
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
  window.classroomTalk = { attach: attach, detach: detach, status: status };
})();
