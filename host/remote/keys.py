"""CURVE key files: written by ``sandbox keygen``, read by ``sandbox serve`` and ``RemoteHost``.

The files are pyzmq's ``zmq.auth`` certificate format (``NAME.key`` holds the public key,
``NAME.key_secret`` both), so keys made with pyzmq's own tools work too. Every problem is one
:class:`KeyFileError` naming the file: the CLI prints it as its one-line exit-2 error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import zmq
import zmq.auth


class KeyFileError(ValueError):
    """A key file is missing, unreadable, malformed, or a secret key others can read."""


def curve_available() -> bool:
    """Whether this libzmq was built with CURVE (it needs libsodium or its bundled tweetnacl)."""
    return bool(zmq.has("curve"))


def keygen(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``DIR/NAME.key`` and ``DIR/NAME.key_secret`` (mode 0600); return both paths.

    Refuses to overwrite an existing pair: a regenerated server key would lock out every
    client that trusts the old one, and a regenerated client key every server that lists it.
    """
    if not name or "/" in name or name.startswith(".") or not name.isprintable():
        raise KeyFileError(f"key name {name!r} must be a plain file name")
    if not curve_available():
        raise KeyFileError("this libzmq has no CURVE support (built without libsodium)")
    folder = Path(directory)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    try:
        for path in (public, secret):
            if path.exists():
                raise KeyFileError(f"{path} already exists; remove it first to make a new key")
        folder.mkdir(parents=True, exist_ok=True)
        # The secret file is created 0600 by the umask below, then checked: no moment in
        # which another user could open it.
        old = os.umask(0o077)
        try:
            zmq.auth.create_certificates(str(folder), name)
        finally:
            os.umask(old)
        os.chmod(secret, 0o600)
        os.chmod(public, 0o644)
    except OSError as exc:
        raise KeyFileError(f"cannot write keys in {folder}: {exc.strerror}") from None
    return public, secret


def _load(path: str | os.PathLike[str]) -> tuple[bytes, bytes | None]:
    # pyzmq says "Invalid certificate file" for a missing file too: ask the file system first.
    try:
        os.stat(path)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    try:
        public, secret = zmq.auth.load_certificate(os.fspath(path))
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path} is not a CURVE key file: {exc}") from None
    if public is None or len(public) != 40:
        raise KeyFileError(f"{path} is not a CURVE key file: no 40-character public-key")
    return public, secret


def load_public(path: str | os.PathLike[str]) -> bytes:
    """The Z85 public key in ``path`` (a ``.key`` or ``.key_secret`` file)."""
    return _load(path)[0]


def load_secret(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file that only its owner can read."""
    public, secret = _load(path)
    if secret is None or len(secret) != 40:
        raise KeyFileError(f"{path} has no secret-key: pass the NAME.key_secret file")
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        )
    return public, secret


def load_authorized(directory: str | os.PathLike[str]) -> dict[bytes, str]:
    """Every public key in ``DIR/*.key``, mapped to its file's name (for the log)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise KeyFileError(f"--authorized {folder}: not a directory")
    keys = {load_public(path): path.stem for path in sorted(folder.glob("*.key"))}
    if not keys:
        raise KeyFileError(f"--authorized {folder}: no *.key public key files in it")
    return keys
