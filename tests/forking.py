"""Run a piece of a test in a forked child: a layer applied there confines the child, never the
test process (a Landlock ruleset or a seccomp filter cannot be removed once applied)."""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from typing import Any


def in_child(body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked child, return its JSON-able result (or fail with its traceback)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.close(r)
            try:
                payload = json.dumps({"ok": body()})
            except BaseException:
                payload = json.dumps({"error": traceback.format_exc()})
            data = payload.encode()
            while data:
                data = data[os.write(w, data) :]
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as reader:
        while chunk := reader.read():
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child died: {status=:#x} (signal {os.WTERMSIG(status)})"
    text = b"".join(chunks).decode()
    assert text, "child wrote nothing"
    outcome = json.loads(text)
    assert "error" not in outcome, outcome["error"]
    return outcome["ok"]
