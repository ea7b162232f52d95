"""The runtime: one graph model (``graph``), one driver loop (``driver``), the kernel segment
(``pipeline``) and the tick-quality stage (``quality``); executors only place the driver."""
