"""The HTTP face: the app (WHEP, the pupil's page, health), the console, lesson commands,
the principal's reports, the admin page, re-watching, pages and static files, metrics.
May import every layer of `edge` but `edge.ops`."""
