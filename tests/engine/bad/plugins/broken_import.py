"""A plugin whose import fails (for the golden error message test)."""

THRESHOLD = undefined_name + 1  # noqa: F821
