"""The ``sandbox keygen`` and ``sandbox serve`` subcommands (registered by ``host.cli``)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from host.argtypes import seconds

_TCP = re.compile(r"tcp://(?P<address>[^:/]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})\Z")
_ADDR_PORT = re.compile(r"(?P<address>[^:/]*):(?P<port>\d{1,5})\Z")


def add_parsers(commands: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the two subcommands to ``commands``; returns their handlers by name."""
    keygen = commands.add_parser(
        "keygen",
        help="write a CURVE key pair for sandbox serve or a client",
        description="Write DIR/NAME.key (public: give it to the other side) and "
        "DIR/NAME.key_secret (secret, mode 0600), in pyzmq's zmq.auth certificate format.",
    )
    keygen.add_argument("directory", metavar="DIR", help="where to write them (made if missing)")
    keygen.add_argument("name", metavar="NAME", help="the files' name, e.g. server or a client's")

    serve = commands.add_parser(
        "serve",
        help="serve a config's providers to remote clients (ZeroMQ, CURVE)",
        description="Serve the providers of --config to RemoteHost clients over ZeroMQ with "
        "CURVE encryption; only the public keys in --authorized may connect. SIGTERM drains: "
        "running calls finish (up to --drain-timeout), new ones are refused.",
    )
    serve.add_argument(
        "--bind", required=True, metavar="tcp://ADDR:PORT", help="where to listen (required)"
    )
    serve.add_argument(
        "--config", required=True, metavar="FILE",
        help="a sandbox.toml (or .json) naming the providers to serve (required)",
    )
    serve.add_argument(
        "--server-key", metavar="S.key_secret",
        help="the server's secret key, from sandbox keygen (mode 0600)",
    )
    serve.add_argument("--authorized", metavar="DIR", help="a directory of clients' *.key files")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="no encryption and no authentication (only for --bind tcp://127.0.0.1:PORT)",
    )
    serve.add_argument("--metrics", metavar="ADDR:PORT", help="serve Prometheus metrics here")
    serve.add_argument(
        "--drain-timeout", type=seconds, default=30.0, metavar="S",
        help="on SIGTERM, how long running calls may finish before they are cancelled (30)",
    )
    serve.add_argument(
        "--client-timeout", type=float, default=5.0, metavar="S",
        help="cancel the calls of a client silent this long: it is gone (5; clients with "
        "calls running ping every second)",
    )
    return {"keygen": _command_keygen, "serve": _command_serve}


def _command_keygen(args: argparse.Namespace) -> int:
    from host.cli import UsageError
    from host.remote.keys import KeyFileError, keygen

    try:
        public, secret = keygen(args.directory, args.name)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    print(f"public key: {public}\nsecret key: {secret} (mode 0600: keep it private)")
    return 0


def _keys(args: argparse.Namespace) -> tuple[tuple[bytes, bytes] | None, dict[bytes, str] | None]:
    from host.cli import UsageError
    from host.remote.keys import KeyFileError, curve_available, load_authorized, load_secret

    bind = _TCP.match(args.bind)
    if bind is None or not 1 <= int(bind["port"]) <= 65535:
        raise UsageError(f"--bind {args.bind}: expected tcp://ADDR:PORT (PORT 1-65535)")
    if args.insecure:
        if bind["address"] != "127.0.0.1":
            raise UsageError("--insecure is only allowed with --bind tcp://127.0.0.1:PORT")
        if args.server_key or args.authorized:
            raise UsageError("--insecure cannot be combined with --server-key/--authorized")
        return None, None
    if not args.server_key or not args.authorized:
        raise UsageError("--server-key and --authorized are required (or --insecure on 127.0.0.1)")
    if not curve_available():
        raise UsageError("this libzmq has no CURVE support (built without libsodium)")
    try:
        return load_secret(args.server_key), load_authorized(args.authorized)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None


def _command_serve(args: argparse.Namespace) -> int:
    import sys

    from host.cli import UsageError
    from host.errors import ProviderUnavailable
    from host.remote.metrics import Metrics
    from host.remote.server import ServeError, Server, install_signals
    from host.terminal import plural
    from policies import PolicyError

    if not args.config:
        raise UsageError("--config: expected a file name, got an empty string")
    server_key, authorized = _keys(args)
    metrics_at = None
    if args.metrics is not None:  # ("" too: an unset variable is not "no metrics")
        metrics_at = _ADDR_PORT.match(args.metrics)
        if metrics_at is None or not 1 <= int(metrics_at["port"]) <= 65535:
            raise UsageError(f"--metrics {args.metrics}: expected ADDR:PORT (PORT 1-65535)")
    if not args.drain_timeout >= 0:
        raise UsageError("--drain-timeout must be a number of seconds >= 0")
    if not args.client_timeout >= 2:
        raise UsageError("--client-timeout must be at least 2 seconds (clients ping every 1 s)")
    from host.cli import new_host

    host = new_host()
    server = metrics = None
    try:
        try:
            names = host.load_config(args.config)
        except (PolicyError, ProviderUnavailable, ValueError) as exc:
            raise UsageError(str(exc)) from None
        if metrics_at is not None:
            metrics = Metrics(host.stats)
            try:
                metrics.serve(metrics_at["address"] or "0.0.0.0", int(metrics_at["port"]))
            except OSError as exc:
                raise UsageError(f"--metrics {args.metrics}: {exc.strerror or exc}") from None
            except UnicodeError:  # not a name the resolver can encode (IDNA)
                raise UsageError(f"--metrics {args.metrics}: not a valid address") from None
        try:
            server = Server(
                host, args.bind, server_key=server_key, authorized=authorized,
                metrics=metrics, drain_timeout=args.drain_timeout,
                client_timeout=args.client_timeout,
            )  # fmt: skip
        except ServeError as exc:
            raise UsageError(str(exc)) from None
        if authorized is None:
            print(
                "sandbox serve: WARNING: --insecure: NO ENCRYPTION AND NO AUTHENTICATION; "
                "any local process can call these providers",
                file=sys.stderr,
            )
        install_signals(server)
        actions = len(host.catalog)
        print(
            f"sandbox serve: serving {plural(len(names), 'provider')} "
            f"({plural(actions, 'action')}) on {args.bind}"
            + (f", metrics on http://{args.metrics}/metrics" if metrics_at else ""),
            file=sys.stderr,
            flush=True,
        )
        server.serve_forever()
    finally:
        if server is not None:
            server.close()
        host.close(timeout=0 if server is None else 5.0)
        if metrics is not None:
            metrics.close()
    return 0
