"""Lets the tests import ``tickflow_example_signals`` from this folder without installing it
(pytest puts a conftest's directory on ``sys.path``)."""
