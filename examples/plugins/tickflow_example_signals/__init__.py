"""An example tickflow plugin: a user's own signal kernel, outside the engine.

Jobs load it with ``plugins: [tickflow_example_signals.kernels]``; once installed
(``pip install examples/plugins``) it is also found through the ``tickflow.kernels`` entry point.
"""
