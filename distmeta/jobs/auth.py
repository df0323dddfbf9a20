"""Ray's token authentication, as a client on this machine sees it.

Ray 2.60 clusters may require a token (`RAY_AUTH_MODE=token` on their nodes). A
client sends one only when its own RAY_AUTH_MODE says token, even when it has the
token at hand; `present_token_if_available` makes a distmeta client send the token
it has, the way `ray.init()` does for a cluster it finds on this machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from distmeta.errors import DistmetaError

AUTH_MODE = "RAY_AUTH_MODE"


def available_token(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The token a Ray client in `env` presents, in Ray's own order (RAY_AUTH_TOKEN, the
    file RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), with where it came from; None without one."""
    if env is None:
        env = os.environ
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return env["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    if env.get("RAY_AUTH_TOKEN_PATH"):
        path = Path(env["RAY_AUTH_TOKEN_PATH"]).expanduser()
        token = path.read_text().strip() if path.is_file() else ""
        return (token, f"RAY_AUTH_TOKEN_PATH={path}") if token else None
    default = Path(env.get("HOME") or Path.home()) / ".ray" / "auth_token"
    token = default.read_text().strip() if default.is_file() else ""
    return (token, str(default)) if token else None


def present_token_if_available(token_file: str | None = None) -> str | None:
    """Send the available token with this process's Ray requests, unless RAY_AUTH_MODE says
    otherwise; returns where the token came from (None: none is sent). A cluster without
    authentication ignores it. `token_file` (`--token-file`) comes before every other source."""
    if token_file is not None:
        os.environ["RAY_AUTH_TOKEN"] = read_token_file(token_file)  # Ray's first source
        os.environ[AUTH_MODE] = "token"
        _reload_ray_config()
        return f"--token-file {token_file}"
    if os.environ.get(AUTH_MODE) is not None:
        found = available_token() if os.environ[AUTH_MODE].lower() == "token" else None
        return found[1] if found else None
    found = available_token()
    if found is None:
        return None
    os.environ[AUTH_MODE] = "token"
    _reload_ray_config()
    return found[1]


def read_token_file(path: str) -> str:
    """The token in `path`, refused with what to do when the file is missing or empty."""
    file = Path(path).expanduser()
    token = file.read_text().strip() if file.is_file() else ""
    if not token:
        what = "an empty file" if file.is_file() else "no such file"
        raise DistmetaError(
            f"--token-file {path}: no token there ({what}); get the cluster's token on its head "
            f"node with `ray get-auth-token` and save it there"
        )
    return token


def _reload_ray_config() -> None:
    from ray._raylet import Config  # Ray caches its config: re-read it, as ray.init() does

    Config.initialize("")


def authentication_failure(address: str, error: Exception, token_source: str | None) -> str:
    """One line a person can act on, for a cluster that refused this client's token (or its lack)."""
    how = (
        "get it on the head node with `ray get-auth-token`, then pass --token-file FILE holding it, or set "
        "RAY_AUTH_TOKEN to it or RAY_AUTH_TOKEN_PATH to such a file (or save it as ~/.ray/auth_token)"
    )
    if token_source is None or "missing" in str(error).lower() or "couldn't find" in str(error):
        return f"--address {address}: the cluster requires a Ray authentication token and none was found here; {how}"
    return f"--address {address}: the cluster refused the token of {token_source} (not this cluster's token); {how}"
