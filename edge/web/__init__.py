"""The HTTP face, a module per page family, each with its own `routes` (a FastAPI
router whose routes get the service, the room, staff, the pupil's grant and checked
bodies from `deps`): `whep`, `channel` (taking part, WHIP), `join` (the pupil's page),
`lessons` (the lesson API), `console`, `principal` (reports, login), `admin`, `rewatch`,
`school` (the school hub: what rooms send, the `/school` pages), `relay_api`, `health`
(healthz, metrics); `app` puts them together. May import every layer of `edge` but
`edge.ops`."""
