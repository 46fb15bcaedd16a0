"""What the tests share: the one brute-force reference, the data builders, the CLI runners.

Nothing here imports lakeslice's transforms: expectations are computed from the SPEC text.
"""
