"""Who may do what: join tokens and links, the roster gate, who joins a lesson and the
caps, throttling, staff logins, the
rooms' signatures to the school hub, HTTP rules (problem bodies, bounded bodies) and slow
clients. May import `edge.config`, `edge.school`."""
