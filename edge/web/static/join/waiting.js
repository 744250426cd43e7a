/* classroom-edge, the pupil's page: the waiting room before and after a lesson (what comes next,
 * a countdown that ends in joining by itself, in the school's own clock) and the lesson now. */

import { authHeaders } from './whep.js';

export function schoolNow(app) { return Date.now() + app.clockOffset; }

// "2026-11-25T08:05:00+07:00" -> "08:05 hôm nay", in the school's own wall-clock time.
function formatStart(app, iso) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::[\d.]+)?(Z|[+-]\d\d:?\d\d)?$/.exec(String(iso || ''));
  if (!m) return '';
  let offset = -new Date().getTimezoneOffset();     // no offset given: the phone's own zone
  if (m[6]) {
    const o = m[6] === 'Z' ? '+0000' : m[6].replace(':', '');
    offset = (o[0] === '-' ? -1 : 1) * (parseInt(o.slice(1, 3), 10) * 60 + parseInt(o.slice(3), 10));
  }
  const day = Date.UTC(+m[1], +m[2] - 1, +m[3]);
  const wall = new Date(schoolNow(app) + offset * 60000);  // school wall clock, read with UTC getters
  const diff = Math.round((day - Date.UTC(wall.getUTCFullYear(), wall.getUTCMonth(), wall.getUTCDate())) / 864e5);
  const when = diff === 0 || diff === 1 ? ' ' + app.t(diff ? 'tomorrow' : 'today')
    : ', ' + app.strings.weekdays[new Date(day).getUTCDay()] + ' ' + (+m[3]) + '/' + (+m[2]);
  return (m[4] + ':' + m[5] + when).replace(/ /g, '\u00a0');     // keep the time on one line
}

// "Tiết 3 · Toán · Cô Lan"
function describeLesson(app, lesson) {
  if (!lesson) return '';
  return [lesson.period ? app.t('period', { n: lesson.period }) : '', lesson.subject, lesson.teacher]
    .filter(Boolean).join(' · ');
}

// A 409 problem {next_start, next_lesson, ended_lesson, now} -> what the page shows:
// {state: 'waiting' | 'ended', detail, at (the bell, for the countdown; NaN: none), lesson}.
export function waitingView(app, problem) {
  const p = problem || {};
  const parsedNow = Date.parse(p.now || '');
  if (!isNaN(parsedNow)) app.clockOffset = parsedNow - Date.now();
  const next = p.next_lesson, ended = p.ended_lesson;
  const time = formatStart(app, p.next_start);
  const nextText = time ? app.t('nextAt', { time: time }) : '';
  if (app.everLive || (ended && !next)) {
    const endedText = ended && ended.subject
      ? app.t('lessonEnded', { subject: ended.subject, time: formatStart(app, ended.end).split('\u00a0')[0] }) : '';
    return {
      state: 'ended', detail: [endedText, app.t('thanks'), nextText].filter(Boolean).join(' '),
      at: NaN, lesson: app.everLive ? null : next
    };
  }
  return {
    state: 'waiting', detail: [nextText, app.t('autoJoin')].filter(Boolean).join(' '),
    at: Date.parse(p.next_start || ''), lesson: next
  };
}

// Before the bell: what comes, and a countdown that ends in joining by itself.
export function showCountdown(app, at, lesson) {
  const els = app.els;
  clearInterval(app.countdownTimer);
  app.countdownTimer = 0;
  app.startsAt = at;
  els['lesson-info'].textContent = describeLesson(app, lesson);
  els['lesson-info'].hidden = !lesson;
  els.countdown.hidden = isNaN(at);
  if (isNaN(at)) return;
  const pad = (n) => (n < 10 ? '0' : '') + n;
  const tick = () => {
    const left = Math.round((app.startsAt - schoolNow(app)) / 1000);
    if (left <= 0) { els.countdown.textContent = app.t('startingNow'); return; }
    const h = Math.floor(left / 3600), m = Math.floor(left / 60) % 60, s = left % 60;
    els.countdown.textContent = app.t('startsIn', { left: (h ? h + ':' + pad(m) : m) + ':' + pad(s) });
  };
  tick();
  app.countdownTimer = setInterval(tick, 1000);
}

// The room's outlook {live, next, ended, now} from GET /api/rooms/{room}/now; null on failure.
async function fetchOutlook(app) {
  const url = new URL(app.config.whep, location.href);
  url.pathname = url.pathname.replace(/\/whep\/([^/]+)\/?$/, '/api/rooms/$1/now');
  const ctrl = window.AbortController ? new AbortController() : null;
  const timer = setTimeout(() => { if (ctrl) ctrl.abort(); }, 5000);
  try {
    const res = await fetch(url.href, { headers: authHeaders(app.config), cache: 'no-store', signal: ctrl ? ctrl.signal : undefined });
    return res.status === 200 ? await res.json() : null;
  } catch (e) {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

// A 409 without the lesson outlook (next, ended, the school's clock): ask the room for it.
export async function withOutlook(app, problem) {
  const o = await fetchOutlook(app);
  if (!o) return problem;
  return Object.assign({}, problem, {
    now: o.now, next_lesson: o.next, ended_lesson: o.ended,
    next_start: problem.next_start || (o.next && o.next.start) || null
  });
}

// "Tiết 2 · Toán · Nguyễn Thị Lan" under the school's name while live
export async function showLessonNow(app) {
  const el = app.els['lesson-now'];
  clearTimeout(app.lessonTimer);
  if (app.classroom.state !== 'live') { el.hidden = true; return; }
  const o = await fetchOutlook(app);
  const live = o ? o.live : null;
  el.textContent = describeLesson(app, live);
  el.hidden = !live || app.classroom.state !== 'live';
  app.lessonTimer = setTimeout(() => showLessonNow(app), 120000);    // the next period may follow on
}
