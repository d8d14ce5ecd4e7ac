"""An experiment: its config, its workdir on disk (paths, checkpoints), and preflight checks."""
