"""The training loop (train) and its progress bar on a terminal. The top of the job below its command line: it may
import every other part."""
