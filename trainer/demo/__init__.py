"""The loop end to end on real data: ``agad demo``, and what benchmarks/loop.py measures."""
