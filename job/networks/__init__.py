"""The networks and their training step: the architectures (models), the GAN's training state and compiled step
(gan), and self-conditioning's clusters. May import the data and the configuration, never the run folder, the loop
or the analysis."""
