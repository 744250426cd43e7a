"""Operations: the command line (`archive_cli` for the archive queue), the room drill,
systemd notification, the run lock. The top layer: may import every other."""
