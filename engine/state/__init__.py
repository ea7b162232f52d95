"""Per-key kernel state: arrays in memory while batches run, saved by a backend at checkpoints.

``memory`` registers itself on import; the on-disk backends register a dotted path here and are
imported only when a job uses them (rocksdict and tiledb are heavy imports).
"""

from tickflow.engine.registry import STATE_BACKENDS

STATE_BACKENDS.add("rocksdb", "tickflow.engine.state.rocksdb:RocksDBStateBackend",
                   summary="one RocksDB value per (step, key); a column family per step")
STATE_BACKENDS.add("tiledb", "tickflow.engine.state.tiledb:TileDBStateBackend",
                   summary="one dense TileDB array per step, one attribute per state field")
