"""Recording: the recorder, what is on disk of each lesson, the composed lesson.mp4, the
archive queue and the school's library, the other programs they run (ffmpeg, rclone).
May import `edge.config`, `edge.school`."""
