"""The worker loop: confine, load the provider, say HELLO, serve calls, report usage.

Order matters and is the security argument of the whole project: every confinement layer is
applied *before* the provider's module is imported (its top-level code is as untrusted as its
actions). The wire to the host (:mod:`sandbox.wire`, our ZMTP codec over a blocking Unix socket)
starts no thread, so the worker is one thread under every layer.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from policies import Policy
from policies.paths import UnsafeRulePath, check_rule_path, unsafe_reason
from sandbox import protocol
from sandbox.layers import LayerContext, RequiredLayerMissing, apply_layers
from sandbox.own_root import RUNTIME_PACKAGES, project_root
from sandbox.wire import WireClosed, WorkerWire

if TYPE_CHECKING:
    from providers import Action
    from sandbox.supervisor import CallReceipt, StartState

#: Where the host's cgroups live (v1 hierarchies and the v2 tree are mounted beneath it).
CGROUP_ROOT = "/sys/fs/cgroup"
#: Longest traceback text sent to the host; a deep recursion must not produce megabytes.
MAX_TRACEBACK_CHARS = 16_000
#: Exit code of a worker that refused to run provider code.
EXIT_UNAVAILABLE = 3
#: How long a worker that will not serve waits for the host to accept its connection, so that
#: its reason is read (the host's start-up timeout ends it anyway).
ACCEPT_WAIT_S = 10.0


_current_payload: bytes | None = None


def current_payload() -> bytes | None:
    """The binary frame that came with the call being run (the executor's pickled callable)."""
    return _current_payload


class PeakMemory:
    """Per-call peak RSS: reset the kernel's high-water mark before a call, read it after.

    Writing "5" to ``/proc/self/clear_refs`` resets VmHWM (Linux >= 4.0). The files are opened
    before confinement so later layers need not allow /proc. Falls back to the lifetime peak.
    """

    def __init__(self) -> None:
        self._clear: int | None = None
        self._status: int | None = None
        #: The last status read (its ``Threads:`` line tells :func:`_alone` about threads).
        self._last_status = b""
        try:
            self._clear = os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC)
            self._status = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass

    def fds(self) -> set[int]:
        return {fd for fd in (self._clear, self._status) if fd is not None}

    def reset(self) -> None:
        if self._clear is not None:
            try:
                os.write(self._clear, b"5")
            except OSError:
                self._clear = None

    def peak_bytes(self) -> int:
        if self._status is not None:
            try:
                status = self._last_status = os.pread(self._status, 8192, 0)
                start = status.index(b"VmHWM:") + len(b"VmHWM:")
                return int(status[start : status.index(b"kB", start)]) * 1024
            except (OSError, ValueError):
                pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def threads(self) -> int | None:
        """This process's threads at the last :meth:`peak_bytes` (None if not known)."""
        start = self._last_status.find(b"\nThreads:")
        if start < 0:
            return None
        try:
            return int(self._last_status[start + 9 : self._last_status.index(b"\n", start + 1)])
        except ValueError:
            return None


def _alone(memory: PeakMemory) -> bool:
    """Whether this process is one thread with no child: then, and only then, it may poll for
    the host's next message between calls (``WorkerWire.may_spin``). The host credits that
    poll's CPU only while the tree holds no task but the sandbox's own
    (``host.usage.TreeMeter``): a worker beside a provider's thread or child would be charged
    for it, and must block at once instead."""
    if memory.threads() != 1:
        return False
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _traceback_text(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return text


@dataclass
class Worker:
    """One worker's state after start-up: its policy, its actions and its socket."""

    spec: protocol.SpawnSpec
    policy: Policy
    actions: dict[str, Action]
    socket: WorkerWire
    memory: PeakMemory
    cpu_lifetime_s: int
    #: Where the worker marks each call it received (shared with its init; see CallReceipt).
    receipt: CallReceipt | None = None
    #: The process tree's CPU seconds at the end of the last call (its usage report).
    cpu_total_s: float = 0.0
    #: The actions whose input may hold integral floats for integers (``providers.integers``).
    _integers: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        from providers.integers import needs_conversion

        self._integers = frozenset(
            name for name, action in self.actions.items() if needs_conversion(action.input_schema)
        )

    def send(self, message: protocol.WorkerMessage | list[bytes]) -> None:
        """Send a message, or frames already encoded (a RESULT, see :meth:`run_call`)."""
        frames = message if isinstance(message, list) else protocol.encode(message)
        self.socket.send_multipart(frames)

    def serve(self) -> int:
        """Answer calls until told to shut down, or until the CPU budget says retire; exit
        code 4 when the connection to the host is lost or broken."""
        try:
            return self._serve()
        except WireClosed as exc:  # the host went away, or its stream is broken
            print(f"sandbox worker: {exc}", file=sys.stderr)
            return 4

    def _serve(self) -> int:
        while True:
            try:
                frames = self.socket.recv_multipart()
                # As large as the host may send under this policy (it refuses bigger inputs).
                message = protocol.decode_host_message(
                    frames, max_size=protocol.largest_call(self.policy.input)
                )
            except protocol.ProtocolError as exc:
                print(f"sandbox worker: bad message from host: {exc}", file=sys.stderr)
                return 4
            if isinstance(message, protocol.Shutdown):
                return 0
            if isinstance(message, protocol.Ping):
                self.send(protocol.Pong(message.seq))
                continue
            if self.receipt is not None:  # before any provider code runs for this call
                self.receipt.mark(message.call_id)
            reply = self.run_call(message)
            # Before the reply goes: from then on the host counts this work as outside calls.
            self.socket.may_spin = message.spin and _alone(self.memory)
            self.send(reply)
            remaining = self.cpu_lifetime_s - self.cpu_total_s
            if remaining < self.policy.cpu_time + 1:
                self.send(protocol.Retire("CPU-time budget of this worker is used up"))
                return 0

    def run_call(self, call: protocol.Call) -> protocol.WorkerMessage | list[bytes]:
        """Run one action and turn what happened into a FAILURE message or a RESULT's frames
        (encoded here once, since the size check needs the encoding anyway)."""
        action = self.actions.get(call.action)
        cpu_before = _cpu_seconds()
        self.memory.reset()
        if action is None:  # The host checks the catalog first; this is a defence only.
            return self._failure(
                call, "ActionFailed", f"unknown action {call.action!r}", cpu_before
            )
        # Per-call CPU limit: SIGPROF's default action kills the process, even inside C code.
        signal.setitimer(signal.ITIMER_PROF, self.policy.cpu_time)
        global _current_payload
        _current_payload = call.payload
        arguments = call.input
        if call.action in self._integers:
            from providers.integers import as_declared

            arguments = as_declared(arguments, action.input_schema)
        try:
            value = action.function(**arguments)
        except MemoryError as exc:
            signal.setitimer(signal.ITIMER_PROF, 0)
            del exc  # release the frames holding the memory before we report
            return self._failure(
                call, "MemoryExceeded", "the action ran out of memory (memory limit)", cpu_before
            )
        except BaseException as exc:
            signal.setitimer(signal.ITIMER_PROF, 0)
            return self._failure(
                call,
                "ActionFailed",
                f"{type(exc).__name__}: {exc}",
                cpu_before,
                tb=_traceback_text(exc),
                exception_type=type(exc).__name__,
                declared=isinstance(exc, action.raise_classes),
            )
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            _flush_std_streams()
        try:
            encoded = protocol.dumps(value)
        except (TypeError, ValueError) as exc:
            return self._failure(
                call, "OutputInvalid", f"the result is not JSON: {exc}", cpu_before
            )
        except RecursionError:
            return self._failure(
                call, "OutputInvalid", "the result nests too deeply to encode", cpu_before
            )
        except MemoryError:
            return self._failure(
                call, "MemoryExceeded", "out of memory while encoding the result", cpu_before
            )
        if len(encoded) > self.policy.output:
            return self._failure(
                call,
                "OutputTooLarge",
                f"the result is {len(encoded)} bytes; the limit is {self.policy.output}",
                cpu_before,
            )
        too_deep = protocol.result_depth_problem(value, encoded)
        if too_deep is not None:
            return self._failure(call, "OutputInvalid", too_deep, cpu_before)
        return protocol.encode_result(call.call_id, encoded, self._usage(cpu_before))

    def _usage(self, cpu_before: float) -> protocol.Usage:
        total = self.cpu_total_s = _cpu_seconds()
        return protocol.Usage(max(0.0, total - cpu_before), self.memory.peak_bytes(), total)

    def _failure(
        self,
        call: protocol.Call,
        error_type: str,
        message: str,
        cpu_before: float,
        *,
        tb: str = "",
        exception_type: str = "",
        declared: bool = False,
    ) -> protocol.Failure:
        return protocol.Failure(
            call.call_id, error_type, message, tb, exception_type, self._usage(cpu_before),
            declared,
        )


def _flush_std_streams() -> None:
    """Push what the action printed into the log pipes before the result leaves."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _wire(spec: protocol.SpawnSpec, policy: Policy) -> WorkerWire:
    """The (not yet connected) connection to the host's endpoint; its messages may be as large
    as the host sends under this policy (it refuses bigger inputs before sending)."""
    return WorkerWire(
        spec.endpoint.removeprefix("ipc://"),
        identity=spec.worker_id.encode(),
        budget=protocol.largest_call(policy.input),
    )


def _describe(actions: dict[str, Action]) -> list[dict[str, object]]:
    return [action.describe() for action in actions.values()]


def _provider_dirs(ref: str, search_path: list[str], state: list[str]) -> list[str]:
    """What the provider's own files are: its file's directory, or its top-level package (a
    top-level plain module: the module file alone).

    Only the *top-level* name is looked up: finding a top-level module runs no code of it,
    whereas finding ``pkg.mod`` would import ``pkg`` before confinement. ``search_path`` (the
    host's working directory) is searched too, without being added to ``sys.path`` yet.
    """
    from providers.loader import split_reference

    path = split_reference(ref)[0]
    if path.endswith(".py"):
        directory = os.path.dirname(os.path.abspath(path))
        # A file straight in /tmp, in /, in a home...: keep only the file, the rest stays
        # private (its siblings cannot be imported then).
        if directory == "/tmp" or unsafe_reason(directory, state) is not None:
            return [os.path.abspath(path)]
        return [directory]
    import importlib.machinery
    import importlib.util

    top = path.split(".")[0]
    try:
        found = importlib.util.find_spec(top) or importlib.machinery.PathFinder.find_spec(
            top, search_path
        )
    except (ImportError, ValueError):
        return []
    if found is None:
        return []
    if found.submodule_search_locations:
        return [str(p) for p in found.submodule_search_locations]
    return [found.origin] if found.origin and os.path.isabs(found.origin) else []


def host_state(spec: protocol.SpawnSpec) -> list[str]:
    """The host's own places this worker must never be granted (nor a directory holding one):
    the ipc directory of every worker's socket, the root of every worker's workdir, and the
    cgroup tree. (Its own workdir and socket lie beneath them, and are granted.)"""
    state = [os.path.dirname(spec.workdir), CGROUP_ROOT]
    if spec.endpoint.startswith("ipc://"):
        state.append(os.path.dirname(spec.endpoint.removeprefix("ipc://")))
    return state


def _checked(rules: list[tuple[str, str]], state: list[str]) -> tuple[str, ...]:
    """Each ``(path, where it came from)`` through :func:`check_rule_path`, in order, once."""
    return tuple(dict.fromkeys(check_rule_path(path, rule, state) for path, rule in rules))


def _own_packages(root: str) -> list[str]:
    """What of the project's directory a worker may read: all of it when it is an installed
    ``site-packages`` (every other library is there too), else (an editable install: the
    source checkout, with its ``.git``, tests and whatever else) only the runtime's packages."""
    if os.path.basename(root) in ("site-packages", "dist-packages"):
        return [root]
    return [os.path.join(root, package) for package in RUNTIME_PACKAGES]


def layer_context(spec: protocol.SpawnSpec, policy: Policy, private_tmp: bool) -> LayerContext:
    """What the worker may read and write once confined, and who it becomes.

    Every rule is checked (:mod:`policies.paths`): a path that is ``/``, a home, or holds the
    host's state raises :class:`UnsafeRulePath`, and the worker does not start.
    """
    state = host_state(spec)
    root = project_root()
    runtime = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    runtime.update(p for p in sys.path if p and os.path.exists(p) and p != root)
    read = [(p, "runtime") for p in sorted(runtime)]
    read += [(p, "runtime") for p in _own_packages(root)]
    read += [(p, "provider") for p in _provider_dirs(spec.provider_ref, spec.search_path, state)]
    read += [(p, "policy.read") for p in policy.read]
    write = [(spec.workdir, "workdir"), *((p, "policy.write") for p in policy.write)]
    write_paths = _checked(write, state)
    if private_tmp:  # the worker's own tmpfs (mount namespace), holding nothing of the host's
        write_paths += ("/tmp",)
    return LayerContext(
        workdir=spec.workdir,
        read_paths=_checked(read, state),
        write_paths=write_paths,
        uid=spec.uid,
        gid=spec.gid,
        cgroup=tuple(spec.cgroup),
        cgroup_error=spec.cgroup_error,
        state=tuple(state),
    )


def _close_stray_fds(keep: set[int]) -> None:
    """The worker holds stdin (/dev/null), stdout and stderr (log pipes) and ``keep``; no more."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _unavailable(
    spec: protocol.SpawnSpec,
    policy: Policy,
    message: str,
    tb: str = "",
    socket: WorkerWire | None = None,
) -> int:
    """Tell the host why this worker will not serve, then exit."""
    try:
        socket = socket if socket is not None else _wire(spec, policy)
        socket.connect()
        socket.send_multipart(protocol.encode(protocol.Unavailable(spec.token, message, tb)))
        # The message is in the socket already, but the host checks who connected when it
        # accepts: exiting before that would get the connection refused, message and all.
        socket.wait_until_accepted(ACCEPT_WAIT_S)
        socket.close()
    except WireClosed as exc:  # the host cannot hear it: its log pipe still may
        print(f"sandbox worker: {message} ({exc})", file=sys.stderr)
    return EXIT_UNAVAILABLE


def run(spec: protocol.SpawnSpec, start: StartState) -> int:
    """Start-up and service of one worker; returns the process exit code."""
    policy = Policy.from_mapping(spec.policy)
    if start.failure is not None:
        return _unavailable(spec, policy, start.failure)
    # The runtime's own imports happen before confinement: after the uid drop and Landlock the
    # worker may no longer read them, and a refusal must still reach the host.
    from providers import ProviderLoadError, integers, load_provider  # noqa: F401 (integers)
    from providers.schemas import leave_meta_schema_check_to_host

    leave_meta_schema_check_to_host()  # the host checks every schema of the HELLO

    memory = PeakMemory()
    _close_stray_fds(memory.fds())
    # The socket is made before the layers (seccomp then refuses any other Unix socket) and
    # connected under them.
    try:
        socket = _wire(spec, policy)
    except WireClosed as exc:
        print(f"sandbox worker: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        context = start.context or layer_context(spec, policy, start.private_tmp)
        reports = start.reports + apply_layers(
            "worker", policy, context, required=spec.required, skip=policy.skip
        )
    except (RequiredLayerMissing, UnsafeRulePath) as exc:
        return _unavailable(spec, policy, str(exc), socket=socket)
    # Only now may imports look in the host's working directory (``package.module`` providers).
    sys.path.extend(p for p in spec.search_path if p not in sys.path)
    # Connect now, under every layer; the host's greeting is read with its first call, so the
    # handshake overlaps the provider's import.
    try:
        socket.connect()
    except WireClosed as exc:  # the host gave up on this worker (or is gone)
        print(f"sandbox worker: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    # Confined from here on: now, and only now, the provider's code may run.
    actions: dict[str, Action] = {}
    provider_info: dict[str, object] = {}
    try:
        provider = load_provider(spec.provider_ref)
    except ProviderLoadError as exc:
        _flush_std_streams()
        tb = getattr(exc, "traceback_text", "")[-MAX_TRACEBACK_CHARS:]
        message = str(exc)
        if "ermission denied" in message and spec.uid is not None:
            message += (
                f" (the worker runs as uid {spec.uid}: the provider's files and the directories"
                " holding them must be readable by other users)"
            )
        return _unavailable(spec, policy, message, tb, socket)
    actions = dict(provider.actions)
    provider_info = {k: v for k, v in provider.describe().items() if k != "actions"}
    _flush_std_streams()
    worker = Worker(
        spec, policy, actions, socket, memory, policy.lifetime_cpu_seconds(), start.receipt
    )
    try:
        worker.send(
            protocol.Hello(
                token=spec.token,
                pid=os.getpid(),
                provider=provider_info,
                actions=_describe(actions),
                layers=[r.to_dict() for r in reports],
            )
        )
    except ValueError as exc:  # a schema that is not JSON (the SDK checks, but be sure)
        return _unavailable(spec, policy, f"catalog is not JSON: {exc}", socket=socket)
    except WireClosed as exc:
        print(f"sandbox worker: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    code = worker.serve()
    socket.close()
    return code
