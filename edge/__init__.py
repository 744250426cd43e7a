"""classroom-edge: school life around the live lesson (settings, CLI, HTTP, links)."""
