"""Built-in streaming kernels; importing this package registers every one of them.

numba's on-disk cache (``cache=True``) checks only the file of the function it caches, not the
helpers it inlines from other files (``kernels/window.py``): an edited helper would leave stale
machine code in use. So the cache lives in a directory named by a hash of every kernel source,
and any change to any of them starts a fresh cache. ``NUMBA_CACHE_DIR`` still wins if set.
"""

import hashlib
import os
from importlib import import_module
from pathlib import Path

import numba


def _cache_dir() -> str:
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    digest.update(numba.__version__.encode())
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return str(root / "tickflow" / "numba" / digest.hexdigest()[:16])


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = _cache_dir()

# in registration order; a family may span modules (their kernels name it, e.g. trade_flow's
# are in the "liquidity" family)
_MODULES = ("averages", "returns", "volatility", "autocorrelation", "risk", "microstructure",
            "indicators", "derivatives", "execution", "guards", "statistics", "trade_flow",
            "liquidity", "lead_lag", "cross_key", "arbitrage")

for _module in _MODULES:
    import_module(f"{__name__}.{_module}")
