"""The public API: what ``lakeslice/__init__.py`` exports is typed and shows a runnable example."""

from __future__ import annotations

import inspect

import lakeslice as ls

FUNCTIONS = [n for n in ls.__all__ if inspect.isfunction(getattr(ls, n))]


def test_every_public_function_has_a_checked_example():
    """Doctests run with the suite (--doctest-modules); an example that is skipped checks nothing."""
    missing = [n for n in FUNCTIONS if ">>>" not in (inspect.getdoc(getattr(ls, n)) or "")]
    skipped = [n for n in FUNCTIONS if "+SKIP" in (inspect.getdoc(getattr(ls, n)) or "")]
    assert FUNCTIONS and not missing and not skipped, (missing, skipped)


def test_every_public_function_is_fully_annotated():
    """A wrapper taking ``*args, **kwargs`` hides the real signature from users and type checkers."""
    for name in FUNCTIONS:
        sig = inspect.signature(getattr(ls, name))
        kinds = {p.kind for p in sig.parameters.values()}
        assert inspect.Parameter.VAR_POSITIONAL not in kinds, name
        unannotated = [p for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
        assert not unannotated and sig.return_annotation is not inspect.Signature.empty, name


def test_package_ships_its_type_marker():
    from importlib import resources

    assert resources.files("lakeslice").joinpath("py.typed").is_file()


def test_version_is_the_distribution_version():
    from importlib.metadata import version

    assert ls.__version__ == version("lakeslice")
