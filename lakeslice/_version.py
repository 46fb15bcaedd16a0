"""The installed distribution's version: pyproject.toml is its one source.

>>> from lakeslice._version import __version__
>>> __version__.count(".") >= 2
True
"""

from importlib.metadata import version

__version__ = version("lakeslice")
