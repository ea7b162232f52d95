"""Built-in streaming kernels; importing this package registers every one of them."""

from importlib import import_module

_FAMILIES = ("averages", "returns", "volatility", "risk", "microstructure", "indicators",
             "derivatives", "execution", "guards", "statistics", "liquidity")

for _family in _FAMILIES:
    try:
        import_module(f"{__name__}.{_family}")
    except ModuleNotFoundError as exc:  # a family not written yet
        if exc.name != f"{__name__}.{_family}":
            raise
