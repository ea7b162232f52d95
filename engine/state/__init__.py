"""Per-key kernel state: arrays in memory while batches run, saved by a backend at checkpoints.

Every backend registers a dotted path here and is imported only when a job uses it (rocksdict
and tiledb are heavy imports; ``memory`` goes the same way so ``backend`` never imports it).
"""

from tickflow.engine.registry import STATE_BACKENDS

STATE_BACKENDS.add("memory", "tickflow.engine.state.memory:MemoryStateBackend",
                   summary="state in RAM only; lost when the job ends")
STATE_BACKENDS.add("rocksdb", "tickflow.engine.state.rocksdb:RocksDBStateBackend",
                   summary="RocksDB values of blocks of keys; a column family per step")
STATE_BACKENDS.add("tiledb", "tickflow.engine.state.tiledb:TileDBStateBackend",
                   summary="one dense TileDB array per step, one attribute per state field")
