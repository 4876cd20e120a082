"""The ``agad`` command line."""
