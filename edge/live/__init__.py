"""The live lesson: the service of one mini-PC; each room's sources, encoders and buses
(run by the room's media process, `mediahost`, or in the service's own); the classroom (taking
part), camera control, devices, the Janus relay, what a pupil's page is told, the log
book, the delivery of reports and heartbeats to the school hub. May import
`edge.access`, `edge.recording`, `edge.config`, `edge.school`."""
