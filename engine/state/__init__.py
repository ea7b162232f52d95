"""Per-key kernel state: arrays in memory while batches run, saved by a backend at checkpoints."""
