/* classroom-edge: a small client for Janus's HTTP API and its streaming plugin (relay mode).
 * Plain ES2018, no dependencies. join/relay.js uses it when the service relays through Janus:
 *   var j = await classroomJanus.open(base, token, {onLost, onHangup});   // session + handle
 *   var offer = await j.watch(mountpoint);    // the plugin's JSEP offer
 *   await j.start(answer);                    // our answer; media flows
 *   j.configure([{mid, send, substream, fallback}]);   // what this viewer is sent, per mid
 *   j.trickle(candidate | null); j.close();
 * Events come by long-poll (bounded: 40 s a request, up to 4 failures in a row with backoff);
 * a keepalive goes every 25 s. Hooks: onLost (the session is gone or unreachable), onHangup
 * (Janus hung up the peer connection or the mountpoint stopped), onCandidate (trickled by Janus). */
(function () {
  'use strict';

  var POLL_TIMEOUT = 40000, POLL_FAILURES = 4, KEEPALIVE = 25000, REQUEST_TIMEOUT = 10000;

  function transactionId() {
    return Math.random().toString(36).slice(2) + Date.now().toString(36);
  }

  function JanusError(message, code) {
    var e = new Error(message);
    e.code = code || 0;
    return e;
  }

  async function post(url, message, timeout) {
    var ctrl = window.AbortController ? new AbortController() : null;
    var timer = setTimeout(function () { if (ctrl) ctrl.abort(); }, timeout || REQUEST_TIMEOUT);
    try {
      var res = await fetch(url, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(message),
        cache: 'no-store', signal: ctrl ? ctrl.signal : undefined
      });
      if (!res.ok) throw JanusError('Janus HTTP ' + res.status, res.status);
      var reply = await res.json();
      if (reply.janus === 'error') {
        throw JanusError('Janus: ' + (reply.error && reply.error.reason), reply.error && reply.error.code);
      }
      return reply;
    } finally {
      clearTimeout(timer);
    }
  }

  async function open(base, token, hooks) {
    base = String(base).replace(/\/+$/, '');
    var closed = false, sessionUrl, handleUrl, handleId, pollCtrl = null, keepaliveTimer = 0;
    var waiting = {};     // transaction -> {resolve, reject, timer}: async plugin replies

    function request(url, message, timeout) {
      message.transaction = message.transaction || transactionId();
      if (token) message.token = token;
      return post(url, message, timeout);
    }

    var created = await request(base, { janus: 'create' });
    sessionUrl = base + '/' + created.data.id;
    try {
      var attached = await request(sessionUrl, { janus: 'attach', plugin: 'janus.plugin.streaming' });
      handleId = attached.data.id;
      handleUrl = sessionUrl + '/' + handleId;
    } catch (e) {
      request(sessionUrl, { janus: 'destroy' }).catch(function () {});
      throw e;
    }

    function lost(reason) {
      if (closed) return;
      close();
      if (hooks.onLost) hooks.onLost(reason);
    }

    function settle(tx, error, value) {
      var w = waiting[tx];
      if (!w) return false;
      delete waiting[tx];
      clearTimeout(w.timer);
      if (error) w.reject(error); else w.resolve(value);
      return true;
    }

    function onEvent(ev) {
      if (!ev || ev.janus === 'keepalive' || ev.janus === 'ack') return;
      if (ev.sender && ev.sender !== handleId) return;
      var data = ev.plugindata && ev.plugindata.data;
      if (ev.janus === 'event') {
        var failed = data && data.error ? JanusError('Janus streaming: ' + data.error, data.error_code) : null;
        if (ev.transaction && settle(ev.transaction, failed, ev)) return;
        var result = data && data.result;
        if (failed || (data && data.streaming === 'destroyed') ||
            (result && (result.status === 'stopped' || result.status === 'stopping'))) {
          if (hooks.onHangup) hooks.onHangup(failed ? failed.message : 'stopped');
        }
      } else if (ev.janus === 'trickle') {      // Janus in full-trickle mode
        if (hooks.onCandidate) hooks.onCandidate(ev.candidate && ev.candidate.completed ? null : ev.candidate);
      } else if (ev.janus === 'hangup' || ev.janus === 'detached') {
        if (hooks.onHangup) hooks.onHangup(ev.reason || ev.janus);
      } else if (ev.janus === 'error') {
        var err = JanusError('Janus: ' + (ev.error && ev.error.reason), ev.error && ev.error.code);
        if (!(ev.transaction && settle(ev.transaction, err))) lost(err.message);
      }
    }

    async function poll() {
      var failures = 0;
      while (!closed) {
        var ctrl = pollCtrl = window.AbortController ? new AbortController() : null;
        var timer = setTimeout(function () { if (ctrl) ctrl.abort(); }, POLL_TIMEOUT);
        try {
          var url = sessionUrl + '?rid=' + Date.now() + '&maxev=10' + (token ? '&token=' + encodeURIComponent(token) : '');
          var res = await fetch(url, { cache: 'no-store', signal: ctrl ? ctrl.signal : undefined });
          if (!res.ok) throw JanusError('Janus HTTP ' + res.status, res.status);
          var body = await res.json();
          failures = 0;
          (Array.isArray(body) ? body : [body]).forEach(function (ev) {
            if (ev && ev.janus === 'error' && !ev.transaction) {
              // 458: no such session (timed out, or Janus restarted)
              return lost('Janus: ' + (ev.error && ev.error.reason));
            }
            onEvent(ev);
          });
        } catch (e) {
          if (closed) return;
          if (++failures >= POLL_FAILURES) return lost(String(e && e.message || e));
          await new Promise(function (r) { setTimeout(r, 500 * Math.pow(2, failures - 1)); });
        } finally {
          clearTimeout(timer);
        }
      }
    }

    // A plugin message whose reply comes as an event with the same transaction.
    function message(body, jsep, timeout) {
      var tx = transactionId();
      var reply = new Promise(function (resolve, reject) {
        waiting[tx] = {
          resolve: resolve, reject: reject,
          timer: setTimeout(function () { settle(tx, JanusError('Janus: no reply to ' + body.request)); }, timeout || REQUEST_TIMEOUT)
        };
      });
      var msg = { janus: 'message', transaction: tx, body: body };
      if (jsep) msg.jsep = jsep;
      request(handleUrl, msg).then(function (ack) {
        if (ack.janus === 'success') settle(tx, null, ack);     // answered at once
      }, function (e) { settle(tx, e); });
      return reply;
    }

    function close() {
      if (closed) return;
      closed = true;
      clearInterval(keepaliveTimer);
      if (pollCtrl) pollCtrl.abort();
      Object.keys(waiting).forEach(function (tx) { settle(tx, JanusError('closed')); });
      // keepalive: true, so that it still goes out from pagehide
      // text/plain needs no CORS preflight, which a keepalive request may not get
      fetch(sessionUrl, {
        method: 'POST', headers: { 'Content-Type': 'text/plain' }, keepalive: true,
        body: JSON.stringify({ janus: 'destroy', transaction: transactionId(), token: token || undefined })
      }).catch(function () {});
    }

    keepaliveTimer = setInterval(function () {
      request(sessionUrl, { janus: 'keepalive' }).catch(function () { /* the long-poll notices */ });
    }, KEEPALIVE);
    poll();

    return {
      session: created.data.id,
      handle: handleId,
      watch: async function (mountpoint) {
        var ev = await message({ request: 'watch', id: mountpoint }, null, 15000);
        if (!ev.jsep || ev.jsep.type !== 'offer') throw JanusError('Janus: watch gave no offer');
        return ev.jsep;
      },
      start: function (answer) {
        return message({ request: 'start' }, { type: answer.type, sdp: answer.sdp });
      },
      // one request per mid: Janus 1.1 (Debian 12's) reads mid, send, substream at the top level
      configure: function (streams) {
        return streams.reduce(function (done, stream) {
          return done.then(function () { return message(Object.assign({ request: 'configure' }, stream)); });
        }, Promise.resolve());
      },
      trickle: function (candidate) {
        if (closed) return;
        var c = candidate
          ? { candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex }
          : { completed: true };
        request(handleUrl, { janus: 'trickle', candidate: c }).catch(function () {});
      },
      close: close,
      get closed() { return closed; }
    };
  }

  window.classroomJanus = { open: open };
})();
