"""no-new-privileges: no execve can ever grant the worker more privilege (setuid binaries, file
capabilities). Landlock and an unprivileged seccomp filter also require it."""

from __future__ import annotations

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.libc import PR_GET_NO_NEW_PRIVS, PR_SET_NO_NEW_PRIVS, prctl

NAME = "no_new_privileges"
STAGE = "worker"


def probe() -> Probe:
    return Probe(True, "prctl(PR_SET_NO_NEW_PRIVS) is available (Linux >= 3.5)")


def apply(policy: Policy, context: LayerContext) -> str:
    try:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        if prctl(PR_GET_NO_NEW_PRIVS) != 1:
            raise LayerError("PR_GET_NO_NEW_PRIVS still reads 0")
    except OSError as exc:
        raise LayerError(str(exc)) from None
    return "set; setuid binaries and file capabilities grant nothing"
