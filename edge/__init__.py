"""classroom-edge: school life around the live lesson, in layers that are folders, each
importing only those below it (import-linter in scripts/check): `ops` (CLI, drill) →
`web` (HTTP) → `live` (the service, rooms) → `access` (tokens, staff) | `recording` →
`config` (settings) → `school` (timetable, lessons, attendance). Below `edge`: `webrtc`,
then `capture`."""
