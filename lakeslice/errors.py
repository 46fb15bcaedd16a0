"""The errors users see, the one line each becomes, and the one redactor of secrets.

Every failure reaches the user as one line (exit 2 for bad input, 1 for a failure while
running); the command line applies :func:`redact` to that line, in text and JSON alike.
Plain Python on scalars: no data passes through here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = [
    "LakesliceError",
    "InputError",
    "RunError",
    "retryable",
    "one_line",
    "error_line",
    "Credentials",
    "split_credentials",
    "redact",
    "PASSWORD_VARIABLES",
]

#: Environment variables that hold a source password; their values never reach the screen.
PASSWORD_VARIABLES = (
    "LAKESLICE_CLICKHOUSE_PASSWORD",
    "CLICKHOUSE_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


class LakesliceError(Exception):
    """Base of the errors lakeslice reports to users as one line.

    >>> err = InputError("window 'x': expected preN_postM")
    >>> isinstance(err, LakesliceError), err.exit_code, err.code, err.retryable
    (True, 2, 'input_error', False)
    """

    exit_code = 1
    code = "runtime_error"
    #: A transient failure (a dropped connection): the operation may be tried again.
    retryable = False


class InputError(LakesliceError, ValueError):
    """Bad usage or bad input: exit status 2."""

    exit_code = 2
    code = "input_error"


class RunError(LakesliceError):
    """A failure while running (server, disk, seal): exit status 1."""

    exit_code = 1
    code = "runtime_error"


def retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is marked transient (``retryable = True`` on its class).

    >>> class Dropped(RunError):
    ...     retryable = True
    >>> retryable(Dropped("connection reset")), retryable(RunError("disk full")), retryable(OSError())
    (True, False, False)
    """
    return isinstance(exc, LakesliceError) and exc.retryable


_LIMIT = 300


def one_line(exc: BaseException) -> str:
    """An exception's message as one line: up to a server's stack trace or a blank line (hints
    follow it), whitespace collapsed, at most 300 characters; the type name if it says nothing.

    >>> one_line(ValueError("Code: 60.\\nDB::Exception: no table x. Stack trace:\\n0. main"))
    'Code: 60. DB::Exception: no table x.'
    >>> one_line(ValueError("bad row\\n\\nHint: set infer_schema_length"))
    'bad row'
    >>> one_line(KeyError())
    'KeyError'
    """
    # clickhouse-driver's server errors keep the server's own text in ``message``
    text = str(getattr(exc, "message", None) or exc)
    text = " ".join(text.split("Stack trace")[0].split("\n\n")[0].split())
    if len(text) > _LIMIT:
        text = text[: _LIMIT - 1].rstrip() + "…"
    return text or type(exc).__name__


def error_line(exc: BaseException) -> str:
    """What the user reads for any exception: ours as they are, others with their type.

    >>> error_line(RunError("db.t: table not found")), error_line(ZeroDivisionError("division by zero"))
    ('db.t: table not found', 'ZeroDivisionError: division by zero')
    """
    text = one_line(exc)
    if isinstance(exc, LakesliceError) or text == type(exc).__name__:
        return text
    return f"{type(exc).__name__}: {text}"


@dataclass(frozen=True)
class Credentials:
    """A URL split at its credentials: ``location`` is the URL without them."""

    scheme: str
    user: str | None
    password: str | None
    location: str


_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def split_credentials(url: str) -> Credentials:
    """Split ``scheme://[user[:password]@]rest``; the credentials end at the LAST ``@`` of the
    URL (host, database and options hold none), so a password may hold unencoded ``/``, ``@``,
    ``:``, ``?`` or ``#`` (percent-encoding works too).

    >>> split_credentials("clickhouse://lake:p/w@d:x@db.host:9000/quant")
    Credentials(scheme='clickhouse', user='lake', password='p/w@d:x', location='clickhouse://db.host:9000/quant')
    >>> split_credentials("clickhouse://db.host/quant").user is None
    True
    """
    m = _SCHEME_RE.match(url)
    if not m:
        return Credentials("", None, None, url)
    userinfo, at, hostpart = url[m.end() :].rpartition("@")
    if not at:
        return Credentials(m.group(1), None, None, url)
    user, sep, password = userinfo.partition(":")
    return Credentials(
        m.group(1), unquote(user) or None, unquote(password) if sep else None, f"{m.group(0)}{hostpart}"
    )


# A URL with credentials inside a message: scheme://userinfo@ where userinfo runs to the last
# "@" before whitespace or a quote (the way split_credentials reads a URL).
_URL_CREDENTIALS_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^\s'\"]*)@")


def _hide_password(m: re.Match[str]) -> str:
    user, sep, _ = m.group(2).partition(":")
    return f"{m.group(1)}{user}:***@" if sep else m.group(0)


def redact(text: str, *, secrets: Iterable[str | None] = (), urls: Iterable[str | None] = ()) -> str:
    """``text`` without secrets: ``secrets``, the passwords of ``urls`` and of the password
    environment variables replaced by ``***`` (also percent-encoded), then any password left in
    a URL of the text.

    >>> redact("source 'clickhouse://lake:p/w@d@db:9000/x': bad port")
    "source 'clickhouse://lake:***@db:9000/x': bad port"
    >>> redact("auth failed (pw p w!)", urls=["clickhouse://u:p w!@h/db"])
    'auth failed (pw ***)'
    """
    known = {s for s in secrets if s}
    known |= {split_credentials(u).password or "" for u in urls if u} - {""}
    known |= {os.environ.get(name, "") for name in PASSWORD_VARIABLES} - {""}
    for secret in sorted(known, key=len, reverse=True):  # longest first: no partial leftovers
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, "***")
    return _URL_CREDENTIALS_RE.sub(_hide_password, text)
