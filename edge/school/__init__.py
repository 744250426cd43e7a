"""School life: timetables and bell time (the scheduler), lessons and their lifecycle,
lessons.db and its migrations, the roster, attendance and the reports, the clock; the school hub's
store and overview, a room's outbox to the hub. The
bottom layer of `edge`: imports none of its other packages."""
