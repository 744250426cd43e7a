/* classroom-edge, the pupil's page: the media elements and the buttons around them (sound on/off,
 * swap board and camera, full screen) and keeping the screen awake during a lesson. */

export function play(app, el) {
  const els = app.els;
  const p = el.play();
  if (!p || !p.then) return;
  p.then(() => { if (el === els.sound) { els.unmute.hidden = true; showMute(app); } }, (err) => {
    if (err && err.name === 'NotAllowedError') els.unmute.hidden = false;   // autoplay policy: ask for a tap
  });
}

// Once sound plays: a button to turn it off and on again (a pupil in a quiet room)
function showMute(app) {
  const els = app.els;
  els.mute.hidden = false;
  els.mute.textContent = els.sound.muted ? app.t('soundOn') : app.t('mute');
  els.mute.setAttribute('aria-pressed', els.sound.muted ? 'true' : 'false');
}

export function toggleMute(app) {
  const els = app.els;
  els.sound.muted = !els.sound.muted;
  if (!els.sound.muted && els.sound.paused) play(app, els.sound);
  showMute(app);
}

export function unmute(app) {
  const els = app.els;
  els.sound.muted = false;
  [els.sound, els.board, els.camera].forEach((el) => { if (el.srcObject) play(app, el); });
  if (!els.sound.srcObject) els.unmute.hidden = true;
}

export function swap(app) {
  const els = app.els;
  const big = els.board.classList.contains('big') ? els.board : els.camera;
  const pip = big === els.board ? els.camera : els.board;
  big.classList.replace('big', 'pip');
  pip.classList.replace('pip', 'big');
}

// A room without a board: the camera fills the stage and there is nothing to swap.
export function showBoard(app, present) {
  const els = app.els;
  els.board.hidden = !present;
  document.getElementById('swap').hidden = !present;
  document.querySelectorAll('.tip').forEach((tip) => { tip.hidden = !present; });     // "rotate to see the board"
  if (!present && els.camera.classList.contains('pip')) swap(app);
}

// No video codec in common with this browser: the sound plays, the stage says why there is no
// picture and which browser shows it (window.classroom.picture is false).
export function showPicture(app, present) {
  app.classroom.picture = present;
  document.body.setAttribute('data-picture', present ? 'yes' : 'none');
  document.getElementById('no-picture').hidden = present;
}

export function updateFullscreenLabel(app) {
  const on = document.fullscreenElement || document.webkitFullscreenElement;
  app.els.fullscreen.textContent = app.t(on ? 'exitFullscreen' : 'fullscreen');
}

export function toggleFullscreen(app) {
  const d = document, stage = app.els.stage;
  if (d.fullscreenElement || d.webkitFullscreenElement) return (d.exitFullscreen || d.webkitExitFullscreen).call(d);
  const req = stage.requestFullscreen || stage.webkitRequestFullscreen;
  if (req) {
    Promise.resolve(req.call(stage)).then(() => {
      if (screen.orientation && screen.orientation.lock) return screen.orientation.lock('landscape');
    }).catch(() => {});
  } else {
    // iPhone: no element full screen, only the native player of one <video>: the board's
    // (its text is what must be readable), the camera's in a room without a board
    const board = app.els.board, video = board.hidden ? app.els.camera : board;
    if (video.webkitEnterFullscreen && video.readyState >= 1) video.webkitEnterFullscreen();
  }
}

// A 45-minute lesson without touching the phone must not let the screen sleep.
export function keepAwake(app, on) {
  app.wantAwake = on;
  if (!navigator.wakeLock) return;
  if (on && !app.wakeLock && document.visibilityState === 'visible') {
    app.wakeLock = navigator.wakeLock.request('screen').then((lock) => {
      lock.addEventListener('release', () => { app.wakeLock = null; });
      if (!app.wantAwake) lock.release();
      return lock;
    }, () => { app.wakeLock = null; });
  } else if (!on && app.wakeLock) {
    app.wakeLock.then((lock) => { if (lock) lock.release(); });
    app.wakeLock = null;
  }
}
