"""Settings: the site and room TOML files, validated by pydantic (errors as FILE:LINE:
key: problem), with their timetables and roster checked; the embedded demo; keeping staff
edits' comments; atomic file writes. May import `edge.school`."""
