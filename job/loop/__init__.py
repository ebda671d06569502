"""One training (train.py), claim → build (setup.py) → train (training_loop.py, on schedule.py's schedule) → finish
(finish.py), what it logs (log_lines.py) and its progress bar on a terminal. The top of the job below its command
line: it may import every other part; train.py itself loads TensorFlow only once the run folder is claimed."""
