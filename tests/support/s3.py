"""Roots on the session's S3 test server (SeaweedFS on loopback), for tests run local and s3."""

from __future__ import annotations

import secrets

import pytest


def fresh_bucket(server, monkeypatch: pytest.MonkeyPatch, *, prefix: str) -> str:
    """A new bucket named ``prefix-<random>``, this process's AWS_* environment pointing at it."""
    name = f"{prefix}-{secrets.token_hex(4)}"
    server.make_bucket(name)
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    return name


def local_or_s3_root(request: pytest.FixtureRequest, *, local: str, prefix: str, path: str) -> str:
    """For a fixture with params ``"local"``/``"s3"``: ``local``, or ``s3://<fresh bucket>/path``."""
    if request.param == "local":
        return local
    server = request.getfixturevalue("s3_server")
    bucket = fresh_bucket(server, request.getfixturevalue("monkeypatch"), prefix=prefix)
    return f"s3://{bucket}/{path}"
