"""What a run's results mean: sample quality and its classifier, the rules that read its figures, report.html,
and sweeps of many runs. May import the run folder, the networks, the data and the configuration, never the loop;
the reading of run folders for reports and sweep files imports no TensorFlow."""
