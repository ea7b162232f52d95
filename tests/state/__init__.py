"""State backends and checkpoints: one contract suite over every backend, crash recovery."""
