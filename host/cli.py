"""The ``sandbox`` command: call an action, list the catalog, check the machine, run the demo.

Exit codes: 0 the call succeeded, 1 the call's outcome was an error, 2 a usage or configuration
error (one line on stderr, never a traceback; under ``--json`` one JSON object on stdout:
``{"ok": false, "error": {"type": "UsageError", "message": ...}}``), 130 interrupted
(SIGINT), 143 terminated (SIGTERM) and 129 hung up (SIGHUP, unless ignored, as under nohup):
the running call is cancelled and every worker killed before the command exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from host.argtypes import seconds
from host.remote.commands import add_parsers as add_remote_parsers
from sandbox.command import STOP_SIGNALS

EXIT_OK = 0
EXIT_OUTCOME = 1
EXIT_USAGE = 2
#: Interrupted (Ctrl-C / SIGINT) and terminated (SIGTERM): 128 + the signal, as shells report.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_HUNG_UP = 129

#: Loaded when neither --provider nor --config is given, so the CLI works right after install.
BUILTIN_PROVIDERS = ("providers.examples.text", "providers.examples.hostile")
#: ``keygen`` and ``serve`` (host.remote.commands), filled in by ``build_parser``.
_REMOTE_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}


class UsageError(Exception):
    """A problem with what the user typed or configured: exit code 2, one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so it unwinds as Ctrl-C does: the running
    call is cancelled, the host closes, its workers are killed and its directories removed
    (the default action would end the process with no clean-up at all)."""


class HungUp(Terminated):
    """SIGHUP (the terminal went away): unwinds as SIGTERM does (the default action left the
    host's directories behind)."""


class _StopSignals:
    """The handler of SIGINT, SIGTERM and SIGHUP while a command runs.

    The first of them raises where the main thread is (``KeyboardInterrupt``, ``Terminated``,
    ``HungUp``), so the command unwinds and its host stops its workers. Any later one is only
    acknowledged: raised inside ``Host.close`` (a second Ctrl-C, a service manager's second
    SIGTERM), it cut that clean-up short, and the CLI died of the signal with its worker trees
    and directories left behind. The clean-up is bounded; SIGQUIT or SIGKILL still end the
    process at once (its workers die with it, by their parent-death signal).
    """

    def __init__(self) -> None:
        self.stopping = False
        self._acknowledged = False

    def __call__(self, signum: int, frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise HungUp() if signum == signal.SIGHUP else Terminated()
        if not self._acknowledged:
            self._acknowledged = True
            # (``os.write``: a handler that prints may interrupt a print, which then raises)
            with contextlib.suppress(OSError):
                os.write(2, b"sandbox: still stopping the workers (Ctrl-\\ quits at once)\n")


def _install_stop_signals() -> Callable[[], None]:
    """Route the stop signals to one ``_StopSignals``; return what puts the old handlers back,
    unless a stop signal came: then the process is on its way out, and the rest of a burst
    must not find the default action (Python's finalization puts it back for every handled
    signal), which would kill it with the signal instead of its exit code, so they are
    ignored from then on. Signals ignored when the command started (SIGHUP under nohup,
    SIGINT in a background job of a script) stay ignored."""
    handler = _StopSignals()
    previous = {}
    for signum in STOP_SIGNALS:
        old = signal.getsignal(signum)
        if old is signal.SIG_IGN:
            continue
        previous[signum] = old
        signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, signal.SIG_IGN if handler.stopping else old)

    return restore


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, as every other usage error: no usage dump. Raised, not printed, so
        ``main`` prints it in the shape asked for (one JSON object under ``--json``)."""
        raise UsageError(f"{message} (see '{self.prog} --help')")


#: ``sandbox --help``'s examples, kept under 80 columns (printed as written).
EPILOG = """\
examples:
  sandbox call text.word_count '{"text": "a b c"}'
  sandbox call --provider ./mine.py --memory 128MiB --wall-time 5s mine.act
  sandbox list --config sandbox.toml --json

Run 'sandbox COMMAND --help' for a command's options."""


class _Formatter(argparse.HelpFormatter):
    """Wraps the description to the terminal, keeps the epilog's lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text is EPILOG:
            return text
        return super()._fill_text(text, width, indent)


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether the raw command line asks for ``--json`` (or an abbreviation argparse would
    take for it). Needed when argparse fails before it has parsed ``--json`` itself."""
    for arg in argv:
        if arg == "--":
            return False
        if len(arg) >= 3 and "--json".startswith(arg):
            return True
    return False


def usage_error_json(message: str) -> str:
    """A usage error under ``--json``: the shape of a failed ``call --json`` outcome."""
    return to_json({"ok": False, "error": {"type": "UsageError", "message": message}})


_TRACEBACK = "Traceback (most recent call last):"


def one_line(message: str) -> str:
    """``message`` on one line: of a multi-line one (a worker's start-up output, say) the
    first line and the last; of a traceback in it only its last line, the exception."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 1:
        return "".join(lines)
    first, last = lines[0], lines[-1]
    if first.endswith(_TRACEBACK):
        return f"{first[: -len(_TRACEBACK)].rstrip()} {last}"
    return f"{first} ... {last}"


def _report_usage_error(exc: UsageError, as_json: bool) -> int:
    message = one_line(str(exc))
    if as_json:
        print(usage_error_json(message))
    else:
        print(printable(f"sandbox: error: {message}"), file=sys.stderr)
    return EXIT_USAGE


def _add_colour(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour outcomes: auto (on a terminal, unless NO_COLOR is set), always or never",
    )


def _add_sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        action="append",
        default=[],
        metavar="REF",
        help="a provider to load: package.module, package.module:attr, path/to/file.py or "
        "entrypoint:NAME (an installed provider) (repeatable)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="a sandbox.toml (or .json) naming providers and policies"
    )


#: The policy flags of ``call`` and ``list``: (flag, policy field, metavar, help).
POLICY_FLAGS = (
    ("--memory", "memory", "SIZE", "memory a worker may use, e.g. 512MiB"),
    ("--wall-time", "wall_time", "S", "wall-clock time an action may run, e.g. 5s"),
    ("--cpu-time", "cpu_time", "S", "CPU time one call may use, e.g. 2s"),
    ("--network", "network", "on|off", "whether the worker may use the network"),
    ("--read", "read", "PATH", "a path the worker may also read (repeatable)"),
    ("--write", "write", "PATH", "a path the worker may also write (repeatable)"),
)
_ON = ("on", "true", "yes")
_OFF = ("off", "false", "no")


def _add_policy_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "policy",
        "Merged over the policy of each provider (from --config, else the defaults); "
        "--read and --write add to the paths already allowed.",
    )
    for flag, key, metavar, text in POLICY_FLAGS:
        repeat = key in ("read", "write")
        group.add_argument(
            flag,
            dest=f"policy_{key}",
            metavar=metavar,
            action="append" if repeat else "store",
            default=[] if repeat else None,
            help=text,
        )


def apply_policy_flags(policy: Any, args: argparse.Namespace) -> Any:
    """``policy`` with the policy flags given in ``args`` merged over it, validated by the
    policy model itself (the config file's rules); a bad value is a UsageError naming the flag.
    """
    from policies import PolicyError

    for flag, key, _metavar, _text in POLICY_FLAGS:
        value = getattr(args, f"policy_{key}", None)
        if value is None or value == []:
            continue
        items: list[Any] = list(value) if isinstance(value, list) else [value]
        for item in items:
            override: Any = item
            if key == "network" and item.lower() in _ON + _OFF:
                override = item.lower() in _ON
            elif key in ("read", "write"):
                # Relative to where the command runs (the file needs absolute paths).
                path = os.path.abspath(item) if item and "\0" not in item else item
                override = (*getattr(policy, key), path)
            try:
                policy = policy.merged({key: override}, path="")
            except PolicyError as exc:
                expected = "on or off" if key == "network" else exc.expected
                raise UsageError(f"{flag} {item}: expected {expected}, got {exc.got}") from None
            if key in ("read", "write") and not os.path.exists(override[-1]):
                # A rule on a missing path is dropped (reported only as "absent, skipped"): a
                # mistyped flag must not pass for one that took effect.
                raise UsageError(f"{flag} {item}: no such file or directory ({override[-1]})")
    return policy


def _version() -> str:
    """The installed distribution's version (package metadata, the one source of truth)."""
    from host import __version__

    return __version__


class _VersionAction(argparse.Action):
    """``--version``, reading the package metadata only when asked (it costs ~0.1 s)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sandbox",
        description="Run untrusted action providers in confined, resource-limited workers. "
        "With neither --provider nor --config, the built-in example providers "
        "(text, hostile) are loaded.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the version")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    call = commands.add_parser(
        "call",
        help="call one action and print its result",
        description="Call ACTION with INPUT (a JSON object) and print the result. Exit code 0 "
        "when the call succeeded, 1 when its outcome was an error (Timeout, ActionFailed, ...), "
        "2 for a usage or configuration error.",
    )
    call.add_argument(
        "action", metavar="ACTION", help="the action's full name, e.g. text.word_count"
    )
    call.add_argument(
        "input",
        metavar="INPUT",
        nargs="?",
        default="{}",
        help="JSON text, @file.json, or - for standard input (default: {})",
    )
    _add_sources(call)
    call.add_argument(
        "--timeout", type=seconds, metavar="S",
        help="give up on the call after S seconds (or 5s, 500ms); the worker's start is bounded"
        " by its own start-up limit",
    )
    call.add_argument("--json", action="store_true", help="print exactly one JSON object")
    _add_colour(call)
    _add_policy_flags(call)

    listing = commands.add_parser("list", help="list the actions of the loaded providers")
    _add_sources(listing)
    _add_policy_flags(listing)
    listing.add_argument("--json", action="store_true", help="print the catalog as JSON")

    doctor = commands.add_parser(
        "doctor",
        help="show which confinement layers this machine supports",
        description="Probe every confinement layer: available or not, why, and the versions "
        "that matter (kernel, Landlock ABI, libseccomp, cgroup version). Exit code 0 when every "
        "layer the default policy requires is available here, 1 otherwise.",
    )
    doctor.add_argument("--json", action="store_true", help="print the table as JSON")
    _add_colour(doctor)

    demo = commands.add_parser(
        "demo",
        help="run the example and hostile actions under a strict policy",
        description="Runs every example action and every deliberately hostile action (spin, "
        "sleep, memory bomb, fork bomb, escapes, crashes, floods) under a strict policy and "
        "prints what each attempted, its outcome and what it cost.",
    )
    _add_colour(demo)
    from host.fuzz.cli import add_parser as add_fuzz

    add_fuzz(commands, _add_sources)
    _REMOTE_HANDLERS.update(add_remote_parsers(commands))
    return parser


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float, refusing one too large for a float (``1e400`` parsed as
    infinity, which JSON cannot carry; ``NaN`` and ``Infinity`` are usage errors too)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text} is too large for a float")
    return value


def _each_key_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice: ``json`` keeps the last silently, so
    ``{"a": 1, "a": 2}`` called the action with ``a`` = 2 (a config file refuses it too)."""
    table: dict[str, Any] = {}
    for key, value in pairs:
        if key in table:
            raise ValueError(f"the key {json.dumps(key)} is given twice in one object")
        table[key] = value
    return table


#: The most ``sandbox call`` reads of an ``@FILE`` or ``-`` input: it is read before any policy
#: is known (``/dev/zero`` or ``yes |`` must not take the machine's memory), and far above the
#: default ``input`` limit of 1 MiB.
MAX_INPUT_READ = 256 * 1024 * 1024


def _read_input(text: str) -> Any:
    if text == "-":
        if sys.stdin is None:  # started with standard input closed (``<&-``)
            raise UsageError("INPUT is -, but standard input is closed")
        source = "standard input"
        try:
            raw = sys.stdin.buffer.read(MAX_INPUT_READ + 1)
        except OSError as exc:
            raise UsageError(f"cannot read standard input: {exc.strerror}") from None
    elif text.startswith("@"):
        source = text[1:]
        try:
            with open(source, "rb") as f:
                raw = f.read(MAX_INPUT_READ + 1)
        except OSError as exc:
            raise UsageError(f"cannot read input file {source}: {exc.strerror}") from None
    else:
        source, raw = "INPUT", text.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_INPUT_READ:
        from policies.units import format_size

        raise UsageError(f"{source} is larger than {format_size(MAX_INPUT_READ)}, the most read")
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite,
            object_pairs_hook=_each_key_once,
        )  # fmt: skip
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    except RecursionError:  # the decoder recurses: 100,000 nested arrays are too deep for it
        raise UsageError(f"{source} is nested too deeply to decode") from None
    if not isinstance(value, dict):
        raise UsageError(f"{source} must be a JSON object, got {type(value).__name__}")
    return value


def _starting(args: argparse.Namespace, what: str) -> Any:
    """On a terminal, after a second: say that the command waits for a worker to start (a
    provider slow to import would otherwise be silence until the start-up timeout)."""
    from host.reactor import STARTUP_TIMEOUT_S
    from host.terminal import Status

    text = (
        f"starting the worker of {printable(what)} (importing the provider, confined; "
        f"up to {STARTUP_TIMEOUT_S:g}s)..."
    )
    return Status(sys.stderr, text) if not getattr(args, "json", False) else Status(None, text)


def new_host() -> Any:
    """A ``Host``, or a UsageError saying why none can start here (a full or unwritable
    TMPDIR, too few file descriptors: each was a traceback)."""
    from host import Host

    try:
        return Host()
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise UsageError(f"cannot start the host: {exc.strerror or exc}{where}") from None


def _open_host(args: argparse.Namespace) -> Any:
    """A Host with the providers the arguments name. Raises UsageError for bad references."""
    from policies import Policy

    # The flags and the config are checked before any worker starts, and before the host's
    # own modules load (~0.4 s), so a usage error costs next to nothing.
    if args.config == "":  # (an unset variable, say): not the same as no --config at all
        raise UsageError("--config: expected a file name, got an empty string")
    try:
        default_policy = apply_policy_flags(Policy(), args)
        configured = []
        if args.config:
            from policies import load_config  # (it needs jsonschema: only with a config)

            for entry in load_config(args.config).providers:
                configured.append((entry, apply_policy_flags(entry.policy, args)))
    except ValueError as exc:  # a PolicyError (or a ConfigError, one too), named where
        raise UsageError(str(exc)) from None

    from host import ProviderUnavailable
    from providers.loader import split_reference

    host = new_host()
    try:
        for entry, policy in configured:
            with _starting(args, entry.name):
                host.add_provider(entry.source, policy=policy, name=entry.name)
        refs = list(args.provider)
        if not args.config and not refs:
            refs = list(BUILTIN_PROVIDERS)
        for ref in refs:
            path, _ = split_reference(ref)
            if path.endswith(".py") and not os.path.exists(path):
                raise UsageError(f"--provider {ref}: no such file")
            with _starting(args, ref):
                host.add_provider(ref, policy=default_policy)
    except (ProviderUnavailable, ValueError) as exc:  # (a PolicyError is a ValueError)
        host.close()
        raise UsageError(str(exc)) from None
    except BaseException:  # interrupted: stop every worker now, wait for none
        host.close(timeout=0)
        raise
    return host


def _command_call(args: argparse.Namespace) -> int:
    from host import Outcome

    payload = _read_input(args.input)
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    host = _open_host(args)
    try:
        descriptor = host.catalog.find(args.action)
        if descriptor is None:
            known = ", ".join(d.full_name for d in host.catalog.find_all())
            raise UsageError(f"unknown action {args.action!r}; known actions: {known or 'none'}")
        outcome: Outcome = host.run(args.action, payload, timeout=args.timeout)
        layers: list[dict[str, Any]] = next(
            (p.layers for p in host.providers() if p.name == descriptor.provider), []
        )
    except BaseException:  # interrupted: ``run`` cancelled the call; kill the rest now
        host.close(timeout=0)
        raise
    finally:
        host.close()
    if args.json:
        data = outcome.to_dict()
        data["layers"] = layers
        print(to_json(data))
    elif outcome.ok:
        # Always JSON (a string result too, quoted), so what is printed parses the same way
        # whatever the result's type; pretty for people, non-ASCII kept as it is.
        text = json.dumps(outcome.value, indent=2, ensure_ascii=False)
        print(printable(text) if sys.stdout.isatty() else text)
        _print_streams(outcome)
    else:
        assert outcome.error is not None
        _print_streams(outcome)
        from host.terminal import RED, colour_wanted, paint

        kind = paint(outcome.error.type, RED, colour_wanted(sys.stderr, args.color))
        print(f"{kind}: {printable(outcome.error.message)}", file=sys.stderr)
        tb = outcome.error.details.get("traceback")
        if tb:
            sys.stderr.write(printable(str(tb)))
    return EXIT_OK if outcome.ok else EXIT_OUTCOME


#: Control characters a terminal acts on (C0 but newline and tab, DEL, C1): worker text that
#: carried them could move the cursor, erase the CLI's own lines or hide what follows.
_CONTROL = {
    c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))
}
# Bidirectional overrides and isolates reorder what follows them on the line (a name could
# read as another): written as \uXXXX too.
_CONTROL.update(
    {c: f"\\u{c:04x}" for c in (0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
)
#: For text that must stay on its line (a name, a type): line breaks and tabs escaped as well.
_CONTROL_IN_LINE = {**_CONTROL, 0x09: "\\t", 0x0A: "\\n"}


def _print_streams(outcome: Any) -> None:
    """What the action printed, on stderr (stdout is the result's): its stdout, then its
    stderr, each in its own order, each under a heading when both have something."""
    both = bool(outcome.stdout and outcome.stderr)
    for name, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
        if text:
            if both:
                sys.stderr.write(f"--- the action's {name} ---\n")
            sys.stderr.write(printable(text if text.endswith("\n") else text + "\n"))


def printable(text: str) -> str:
    """``text`` (a worker's message, traceback, logs or descriptions: the worker chose every
    character) with every control character a terminal would act on written as ``\\xNN``."""
    return text.translate(_CONTROL)


def printable_line(text: str) -> str:
    """:func:`printable`, and on one line: a provider's line break in a name or a description
    cannot start a line that reads as another provider's action."""
    return text.translate(_CONTROL_IN_LINE)


def _command_list(args: argparse.Namespace) -> int:
    host = _open_host(args)
    try:
        actions = host.catalog.find_all()
    finally:
        host.close()
    if args.json:
        print(to_json([d.to_dict() for d in actions]))
        return EXIT_OK
    for index, d in enumerate(actions):
        if index:
            print()
        flags = "  [safe to re-run]" if d.safe_rerun else ""
        print(printable_line(f"{d.full_name}{flags}"))
        # Every line of a description is indented under its action (none can start at the
        # left edge, where action names are); parameters are one line each.
        for line in d.description.strip().splitlines():
            print(f"  {printable_line(line)}")
        for line in parameter_lines(d.input_schema):
            print(f"    {printable_line(line)}")
    return EXIT_OK


def to_json(value: Any) -> str:
    """The one rule for ``--json`` output everywhere: one object on one line, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _kind(spec: dict[str, Any], depth: int = 0) -> str:
    """What a parameter's schema takes, in a few words: its type(s), the values of an ``enum``
    or ``const`` (``Literal``), the alternatives of an ``anyOf``/``oneOf`` (``int | None``);
    ``any`` only when nothing constrains it."""
    kind = spec.get("type")
    if isinstance(kind, list):
        return " | ".join(map(str, kind))
    if kind is not None:
        return str(kind)
    if "const" in spec:
        return json.dumps(spec["const"], ensure_ascii=False)
    if isinstance(spec.get("enum"), list):
        return "one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"])
    for key in ("anyOf", "oneOf"):
        branches = spec.get(key)
        if isinstance(branches, list) and branches and depth < 3:
            return " | ".join(
                _kind(b, depth + 1) if isinstance(b, dict) else "any" for b in branches
            )
    return "any"


def parameter_lines(schema: Any) -> list[str]:
    """One line per input parameter: its name, type, and whether it is required or its default
    (``text: string, required``; ``min_length: integer = 1``); ``(no parameters)`` for none."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        return ["(no parameters)"]
    required = set(schema.get("required") or ())
    lines = []
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        kind = _kind(spec)
        if name in required:
            tail = ", required"
        elif "default" in spec:
            tail = f" = {json.dumps(spec['default'], ensure_ascii=False)}"
        else:
            tail = ", optional"
        lines.append(f"{name}: {kind}{tail}")
    return lines


# Where the README explains running with fewer layers; a test keeps the README's headings in step.
OPT_OUT_README_SECTION = ("## Layers", "**Failing closed.**")
OPT_OUT_HINT = "the README's Layers section (Failing closed) shows the explicit opt-out."


def _command_doctor(args: argparse.Namespace) -> int:
    from host.doctor import diagnose

    report = diagnose()
    if args.json:
        print(to_json(report))
    else:
        print(
            f"kernel {report['kernel']}, Python {report['python']}, "
            f"{'root' if report['root'] else 'not root'}"
        )
        from host.terminal import GREEN, RED, YELLOW, colour_wanted, paint

        colour = colour_wanted(sys.stdout, args.color)
        width = max(len(row["layer"]) for row in report["layers"])
        for row in report["layers"]:
            hue = GREEN if row["available"] else RED if row["required"] else YELLOW
            state = paint(f"{'available' if row['available'] else 'MISSING':<9}", hue, colour)
            need = "required" if row["required"] else "optional"
            version = f" [{row['version']}]" if row["version"] else ""
            print(f"{row['layer']:<{width}}  {state}  {need:<8}  {row['reason']}{version}")
            for lost in row.get("lost", []):
                print(f"{'':<{width}}  lost: {lost}")
        missing = [r["layer"] for r in report["layers"] if r["required"] and not r["available"]]
        print()
        print(
            "Every layer the default policy requires is available."
            if not missing
            else f"Missing required layers: {', '.join(missing)}. Workers under the default policy "
            f"will refuse to start; {OPT_OUT_HINT}"
        )
    return EXIT_OK if report["ok"] else EXIT_OUTCOME


def _command_demo(args: argparse.Namespace) -> int:
    from host.demo import run_demo
    from host.terminal import colour_wanted

    return run_demo(colour=colour_wanted(sys.stdout, args.color))


def _command_fuzz(args: argparse.Namespace) -> int:
    from host.fuzz.cli import run

    return run(args, _open_host, UsageError, BUILTIN_PROVIDERS, printable)


class OutputError(Exception):
    """Writing standard output failed: the reader went away (``| head``), the disk is full,
    or its encoding (``PYTHONIOENCODING=ascii``) cannot hold the text. Told apart from the
    errors of the work itself by :class:`_Output`."""

    def __init__(self, reason: str, *, broken_pipe: bool = False, encoding: bool = False) -> None:
        super().__init__(reason)
        self.broken_pipe = broken_pipe
        self.encoding = encoding


def _flush_quietly(stream: Any) -> None:
    try:
        stream.flush()
    except (OSError, ValueError):
        pass


def _output_error(exc: OSError | UnicodeEncodeError) -> OutputError:
    if isinstance(exc, UnicodeEncodeError):
        text = exc.object[exc.start : exc.end]
        return OutputError(f"its encoding, {exc.encoding}, cannot write {text!r}", encoding=True)
    return OutputError(exc.strerror or str(exc), broken_pipe=isinstance(exc, BrokenPipeError))


class _Output:
    """``sys.stdout`` while the command runs, with a failed write or flush raised as
    :class:`OutputError`; everything else is the stream's own."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (OSError, UnicodeEncodeError) as exc:
            raise _output_error(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _output_error(exc) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _fill_closed_streams() -> None:
    """Give /dev/null to the standard streams the command was started without (``<&-``,
    ``>&-``, ``2>&-``), in descriptor order: else the first files the host opens would take
    descriptors 0-2, and the results or errors would be written into one of its sockets.
    ``sys.stdin`` stays None (so ``-`` can say standard input is closed); output written
    to a closed stream is discarded, as the caller asked."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
            ours = False  # something opened since start-up holds it: never write there
        except OSError:
            ours = os.open(os.devnull, os.O_RDWR) == fd
        if name != "stdin":
            target: int | str = fd if ours else os.devnull
            setattr(sys, name, open(target, "w", encoding="utf-8", closefd=not ours))  # noqa: SIM115


class _Diagnostics:
    """Standard error as the command writes to it: one that cannot be written (its reader
    gone, a full disk, a terminal hung up) turned a usage error, an interrupt or a call whose
    action printed something into exit 1 with a traceback. What cannot be said is dropped,
    and the stream is given /dev/null, so the interpreter's own flush at exit is quiet too."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._broken = False

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                return int(self._stream.write(text))
            except (OSError, ValueError):
                self._give_up()
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._give_up()

    def _give_up(self) -> None:
        self._broken = True
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError, AttributeError):  # (not a real file: a test's capture)
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point."""
    _fill_closed_streams()
    stream, errors = sys.stdout, sys.stderr
    sys.stdout = _Output(stream)
    sys.stderr = _Diagnostics(errors)
    try:
        code = _run_command(argv)
        sys.stdout.flush()
        return code
    except OutputError as exc:
        if exc.encoding:  # what was written before it still goes out
            _flush_quietly(stream)
        else:  # nothing more can be written there, and the interpreter's own flush at exit
            try:  # would fail again: standard output becomes /dev/null
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):  # not a real file (a test's capture)
                pass
        if not exc.broken_pipe:  # ``| head``: not worth a word
            print(f"sandbox: error: cannot write to standard output: {exc}", file=sys.stderr)
        return EXIT_OUTCOME
    except HungUp:  # (outside the command's own handling: while its handlers were put back)
        return EXIT_HUNG_UP
    except Terminated:
        print("sandbox: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:  # before the command's own handling (parsing the arguments)
        print("sandbox: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        sys.stdout, sys.stderr = stream, errors


def _run_command(argv: Sequence[str] | None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(raw)
        # argparse cannot fill an optional positional that follows an option
        # (``call ACTION --json INPUT``); take it from what was left over.
        if (
            args.command == "call"
            and extra
            and args.input == "{}"
            and not extra[0].startswith("--")
        ):
            args.input, extra = extra[0], extra[1:]
        if extra:
            # Point at the subcommand's own help, where its options are listed.
            raise UsageError(
                f"unrecognized arguments: {' '.join(extra)} "
                f"(see '{parser.prog} {args.command} --help')"
            )
    except UsageError as exc:
        return _report_usage_error(exc, _wants_json(raw))
    as_json = bool(getattr(args, "json", False))
    handlers = {
        "call": _command_call,
        "list": _command_list,
        "doctor": _command_doctor,
        "demo": _command_demo,
        "fuzz": _command_fuzz,
        **_REMOTE_HANDLERS,
    }
    in_main_thread = threading.current_thread() is threading.main_thread()
    restore_signals = _install_stop_signals() if in_main_thread else None
    try:
        code = handlers[args.command](args)
        sys.stdout.flush()
    except UsageError as exc:
        code = _report_usage_error(exc, as_json)
    except HungUp:
        _say("sandbox: hung up")  # (the terminal may be gone)
        code = EXIT_HUNG_UP
    except Terminated:
        print("sandbox: terminated", file=sys.stderr)
        code = EXIT_TERMINATED
    except KeyboardInterrupt:
        print("sandbox: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        if restore_signals is not None:
            restore_signals()
    return code


def _say(text: str) -> None:
    """A line on stderr, if it can still be written."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


if __name__ == "__main__":  # run as host.cli, so modules importing it share its UsageError
    try:
        from host.cli import main as _main
    except KeyboardInterrupt:  # Ctrl-C while importing
        print("sandbox: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    _code = _main()
    from sandbox.command import ignore_stop_signals

    ignore_stop_signals()
    raise SystemExit(_code)
