"""lakeslice benchmark harness: ``python -m benchmarks.run`` (``make bench``)."""
