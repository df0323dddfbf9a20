"""Which Ray token a distmeta client presents, and the errors about it (no cluster needed)."""

import pytest

from distmeta.errors import DistmetaError
from distmeta.jobs.auth import available_token, read_token_file
from distmeta.jobs.client import connect


def test_a_missing_or_empty_token_file_is_refused_before_any_connection_saying_how_to_get_one(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, what in [(tmp_path / "missing", "no such file"), (empty, "an empty file")]:
        with pytest.raises(
            DistmetaError,
            match=rf"^--token-file {path}: no token there \({what}\); .*"
            r"`ray get-auth-token`",
        ):
            connect("http://127.0.0.1:9", str(path))  # a port nothing listens on: never reached


def test_a_token_file_is_read_without_its_surrounding_whitespace(tmp_path):
    token = tmp_path / "token"
    token.write_text("  abc123\n")
    assert read_token_file(str(token)) == "abc123"


def test_the_token_sources_follow_rays_order(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home")
    (tmp_path / "file").write_text("from-file")
    env = {"HOME": str(tmp_path)}
    assert available_token(env) == ("from-home", str(tmp_path / ".ray" / "auth_token"))
    assert available_token({**env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "file")})[0] == "from-file"
    assert available_token({**env, "RAY_AUTH_TOKEN": "direct", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "file")}) == (
        "direct",
        "RAY_AUTH_TOKEN",
    )
