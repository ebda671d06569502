"""The run folder: its names and who may write it (claim), checkpoints, what a run leaves beside them (outputs),
where its time goes (timings), and reopening a run's state (restore). May import the networks, the data and the
configuration, never the loop or the analysis."""
