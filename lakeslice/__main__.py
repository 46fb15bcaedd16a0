"""``python -m lakeslice``: the same command as ``lakeslice``."""

from lakeslice.cli import main

if __name__ == "__main__":
    main()
