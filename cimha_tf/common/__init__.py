"""Bottom layer: the step <-> second timeline, JSON file reading, the binaries' command-line edges."""
