"""The Mistral integration (host.mistral) against mistral-lib's real interfaces.

The unit tests need mistral-lib (the ``mistral`` extra), the engine test mistral itself; all
are marked ``mistral`` and run by ``.ci/mistral`` in a venv of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Every test here runs in .ci/mistral's venv (the mistral extra and Mistral itself), selected
#: by ``-m mistral``; the main suite leaves this module out (tests/conftest.py).
pytestmark = pytest.mark.mistral

ml = pytest.importorskip(
    "mistral_lib", reason="mistral-lib is not installed (pip install -e '.[mistral]')"
)
from mistral_lib import exceptions as ml_exc  # noqa: E402
from mistral_lib.actions.base import ActionSerializer  # noqa: E402
from mistral_lib.actions.context import (  # noqa: E402
    ActionContext,
    ExecutionContext,
    SecurityContext,
)
from mistral_lib.utils import get_dict_from_string  # noqa: E402

from host import mistral as hm  # noqa: E402

DATA = Path(__file__).parent / "mistral_data"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Workers run under their own uids: they need the provider's directories searchable.
    for parent in (tmp_path.parent, tmp_path):
        parent.chmod(0o755)
    for name in ("flow.py", "dyn.py", "hello_actions.py", "sandbox.toml"):
        shutil.copy(DATA / name, tmp_path / name)
        (tmp_path / name).chmod(0o644)
    monkeypatch.setenv("SANDBOX_CONFIG", str(tmp_path / "sandbox.toml"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield tmp_path / "sandbox.toml"
    hm.close_shared_host()


def test_params_spec_round_trips_through_mistral_parser() -> None:
    schema = {
        "type": "object",
        "properties": {
            "d": {"default": [1, 2]},  # a comma: Mistral's parser would break it
            "n": {"type": "integer", "default": 3},
            "s": {"type": "string", "default": "x"},
            "text": {"type": "string"},
        },
        "required": ["text"],
        "additionalProperties": False,
    }
    spec = hm.params_spec(schema)
    assert spec == 'text, d=null, n=3, s="x"'
    parsed = get_dict_from_string(spec)
    assert list(parsed) == ["text", "d", "n", "s"]
    assert parsed["n"] == 3 and parsed["s"] == "x" and parsed["d"] is None
    assert hm.params_spec({"type": "object", "properties": {"a": {}}}) == "a=null, **kwargs"


def test_catalog_cached_on_disk_and_invalidated(config: Path) -> None:
    provider = hm.SandboxActionProvider("sandbox")
    names = [d.name for d in provider.find_all(namespace="")]
    assert names == [
        "dyn.hello", "dyn.refuse", "flow.boom", "flow.count", "flow.hang", "flow.whoami"
    ]
    count = provider.find("flow.count", namespace="")
    assert count is not None and count.params_spec == "text, min_length=1, tags=null"
    assert count.safe_rerun is True
    assert provider.find("std.echo") is None
    cached = list((config.parent / "cache" / "actionsandbox" / "mistral").glob("*.json"))
    assert len(cached) == 1
    # A second provider object (another Mistral process) answers from the disk cache: a
    # corrupted-on-purpose cache entry proves no worker recomputed it.
    entries = json.loads(cached[0].read_text())
    for entry in entries:
        if entry["full_name"] == "flow.boom":
            entry["description"] = "from the cache"
    cached[0].write_text(json.dumps(entries))
    again = hm.SandboxActionProvider("sandbox")
    assert again.find("flow.boom").description == "from the cache"
    # Changing the provider source invalidates it.
    src = config.parent / "flow.py"
    src.write_text(src.read_text() + "\n\n@provider.action\ndef extra() -> int:\n    return 1\n")
    assert "flow.extra" in [d.name for d in again.find_all()]
    assert again.find("flow.boom").description != "from the cache"


def test_find_all_filters_limit_sort(config: Path) -> None:
    provider = hm.SandboxActionProvider("sandbox")
    assert [d.name for d in provider.find_all(filters={"safe_rerun": True})] == ["flow.count"]
    got = provider.find_all(sort_fields=["name"], sort_dirs=["desc"], limit=2, filters={})
    assert [d.name for d in got] == ["flow.whoami", "flow.hang"]
    everything = [d.name for d in provider.find_all()]
    # As Mistral's API calls it: through the composite provider, filters as keyword arguments
    # in the {attribute: {op: value}} form, and sort keys the descriptors do not have.
    from mistral_lib.actions.providers.composite import CompositeActionProvider

    composite = CompositeActionProvider("all", [provider])
    got = composite.find_all(namespace="", sort_fields=["created_at", "name"],
                             sort_dirs=["asc", "desc"], name={"eq": "flow.count"})  # fmt: skip
    assert [d.name for d in got] == ["flow.count"]
    got = composite.find_all(namespace="", name={"in": ["flow.count", "flow.hang"]})
    assert [d.name for d in got] == ["flow.count", "flow.hang"]
    got = composite.find_all(namespace="", name={"neq": "flow.count"}, description={"has": ""})
    assert "flow.count" not in [d.name for d in got] and got
    # an attribute actions do not have filters nothing, as in Mistral's own filtering
    assert [d.name for d in composite.find_all(namespace="", tags={"eq": "x"})] == everything
    assert [d.name for d in provider.find_all(filters={"nope": 1})] == everything


def test_check_parameters_names_json_path(config: Path) -> None:
    count = hm.SandboxActionProvider("sandbox").find("flow.count")
    count.check_parameters({"text": "a b"})
    with pytest.raises(ml_exc.ActionException, match=r"\$\.tags\[1\]"):
        count.check_parameters({"text": "a", "tags": ["x", 5]})
    with pytest.raises(ml_exc.ActionException, match="text"):
        count.check_parameters({})


def test_run_maps_outcomes_and_serializes(config: Path) -> None:
    provider = hm.SandboxActionProvider("sandbox")
    action = provider.find("flow.count").instantiate({"text": "a bb ccc", "min_length": 2}, {})
    # The action crosses to a remote executor through ActionSerializer: plain attributes only.
    ser = ActionSerializer()
    action = ser.deserialize(ser.serialize(action))
    ctx = ActionContext(security_ctx={"auth_token": "SECRET"}, execution_ctx=ExecutionContext())
    result = action.run(ctx)
    assert result.data == 2 and result.error is None
    boom = provider.find("flow.boom").instantiate({"value": 7}, {}).run(ctx)
    assert boom.error["type"] == "ActionFailed" and "boom 7" in boom.error["message"]
    hang = provider.find("flow.hang").instantiate({}, {}).run(ctx)
    assert hang.error["type"] == "Timeout"


def test_execution_context_only_when_asked(config: Path) -> None:
    provider = hm.SandboxActionProvider("sandbox")
    ctx = ActionContext(
        security_ctx={"auth_token": "SECRET", "trust_id": "T"},
        execution_ctx=ExecutionContext(workflow_execution_id="wf-1", workflow_name="wf",
                                       task_execution_id="t-1", action_execution_id="a-1"),
    )
    whoami = provider.find("flow.whoami")
    assert whoami.params_spec == ""
    got = whoami.instantiate({}, {}).run(ctx)
    assert got.error is None, got.error
    assert got.data == {"workflow_execution_id": "wf-1", "task_execution_id": "t-1",
                        "action_execution_id": "a-1", "workflow_name": "wf"}
    assert "SECRET" not in json.dumps(got.data)
    # An action that did not declare it gets nothing extra (count rejects unknown keys).
    count = provider.find("flow.count").instantiate({"text": "a"}, {})
    assert count.run(ctx).data == 1


def _mistral_importable() -> bool:
    # find_spec, not import: importing Mistral's harness here would configure its logging
    # (a mistral.log in the working directory) and eventlet in the pytest process.
    import importlib.util

    names = ("mistral", "oslotest", "fixtures", "testtools", "requests_mock")
    return all(importlib.util.find_spec(n) is not None for n in names)


@pytest.mark.skipif(
    not _mistral_importable(),
    reason="mistral==23.0.0 and its test harness are not installed (run .ci/mistral)",
)
def test_real_mistral_engine(config: Path) -> None:
    """Real Mistral's EngineTestCase: the entry point is discovered by stevedore, workflows
    call sandboxed actions, and each outcome shows up where a Mistral user looks."""
    proc = subprocess.run(
        [sys.executable, str(DATA / "engine_check.py")],
        capture_output=True, text=True, timeout=400,
        env={**os.environ, "SANDBOX_CONFIG": str(config)},
        cwd=config.parent,  # Mistral writes mistral.log into its working directory
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    report = json.loads(lines[-1][len("RESULT "):])
    assert report["ran"] == 5, report
    assert report["failures"] == [], report
    assert proc.returncode == 0, proc.stderr[-5000:]


def test_dynamic_action_source_runs_confined(config: Path) -> None:
    """Mistral dynamic-action source (an Action subclass) served as a sandbox provider."""
    provider = hm.SandboxActionProvider("sandbox")
    hello = provider.find("dyn.hello")
    assert hello.params_spec == 'who, punct="!"'
    ctx = ActionContext(security_ctx={"auth_token": "SECRET"}, execution_ctx=ExecutionContext())
    assert hello.instantiate({"who": "ops"}, {}).run(ctx).data == "hello ops!"
    refused = provider.find("dyn.refuse").instantiate({}, {}).run(ctx)
    assert refused.error["type"] == "ActionFailed" and "refused" in refused.error["message"]
    # Changing the dynamic source invalidates the catalog.
    src = config.parent / "hello_actions.py"
    assert hello.description == "Greet someone."
    src.write_text(src.read_text().replace("Greet someone.", "Greet loudly."))
    assert provider.find("dyn.hello").description == "Greet loudly."


def test_one_projects_burst_does_not_make_another_project_wait_for_all_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call's OpenStack project is its tenant in the provider's queue (host.fairqueue):
    project A's six queued actions make project B's wait for one of them, not all six. Before,
    the queue was first come, first served across projects."""
    import threading
    import time

    for parent in (tmp_path.parent, tmp_path):
        parent.chmod(0o755)
    shutil.copy(DATA / "nap.py", tmp_path / "nap.py")
    (tmp_path / "nap.py").chmod(0o644)
    toml = tmp_path / "sandbox.toml"
    toml.write_text('[providers.nap]\nsource = "nap.py"\n\n[providers.nap.policy]\n'
                    'workers = { min = 1, max = 1 }\n')
    monkeypatch.setenv("SANDBOX_CONFIG", str(toml))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    try:
        nap = hm.SandboxActionProvider("sandbox").find("nap.nap")

        def context(project: str) -> ActionContext:
            security = SecurityContext(auth_token="S", project_id=project)  # as Mistral's
            return ActionContext(security_ctx=security, execution_ctx=ExecutionContext())

        assert nap.instantiate({"seconds": 0}, {}).run(context("a")).data == 0  # warm
        order: list[str] = []

        def run(project: str) -> None:
            result = nap.instantiate({"seconds": 0.3}, {}).run(context(project))
            assert result.error is None, result.error
            order.append(project)

        burst = [threading.Thread(target=run, args=("a",)) for _ in range(6)]
        for thread in burst:
            thread.start()
        host = hm._shared_host(str(toml))
        deadline = time.monotonic() + 10
        while host.stats()["nap"]["queue"] < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert host.stats()["nap"]["queue"] == 5  # one runs, five wait
        other = threading.Thread(target=run, args=("b",))
        other.start()
        for thread in [*burst, other]:
            thread.join(30)
        assert sorted(order) == ["a"] * 6 + ["b"]
        assert order.index("b") <= 2, order  # first come, first served: 6
    finally:
        hm.close_shared_host()
