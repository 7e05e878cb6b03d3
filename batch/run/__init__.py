"""Running the night: the nightly pipeline, the demo, settings -> services wiring."""
