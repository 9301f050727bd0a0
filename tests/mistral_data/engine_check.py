"""Runs real Mistral's EngineTestCase against the `sandbox` action provider (entry point).

Run in a subprocess with SANDBOX_CONFIG set: prints one JSON line ``RESULT {...}`` and ends with
``os._exit`` (Mistral leaves non-daemon threads behind). Exit code 0 when every test passed.
"""

import json
import os
import sys
import unittest

import mistral.tests.unit  # noqa: F401  (first: it selects the eventlet backend)
from mistral.db.v2 import api as db_api
from mistral.services import actions as action_service
from mistral.services import workflows as wf_service
from mistral.tests.unit.engine import base

WF = """
---
version: '2.0'

wf_ok:
  output:
    n: <% $.n %>
  tasks:
    t1:
      action: flow.count
      input:
        text: "a bb ccc"
        min_length: 2
        tags: ["x", "y"]
      publish:
        n: <% task().result %>

wf_invalid:
  tasks:
    t1:
      action: flow.count
      input:
        text: "a"
        tags: ["x", 5]

wf_boom:
  tasks:
    t1:
      action: flow.boom value=7

wf_hang:
  tasks:
    t1:
      action: flow.hang
"""

SEEN = {}


class SandboxEngineTest(base.EngineTestCase):
    def setUp(self):
        super().setUp()
        wf_service.create_workflows(WF)

    def _task(self, wf_name, state):
        wf_ex = self.engine.start_workflow(wf_name)
        self.await_workflow_state(wf_ex.id, state, timeout=60)
        with db_api.transaction():
            wf_ex = db_api.get_workflow_execution(wf_ex.id)
            task = wf_ex.task_executions[0]
            action_out = [a.output for a in task.action_executions]
            return wf_ex.output, task.state, task.state_info or "", action_out

    def test_ok(self):
        output, _state, _, _ = self._task("wf_ok", "SUCCESS")
        SEEN["ok"] = output
        self.assertEqual(output, {"n": 2})

    def test_invalid(self):
        _, state, info, _ = self._task("wf_invalid", "ERROR")
        SEEN["invalid"] = info
        self.assertEqual(state, "ERROR")
        self.assertIn("$.tags[1]", info)

    def test_boom(self):
        _, state, info, out = self._task("wf_boom", "ERROR")
        SEEN["boom"] = [info, out]
        self.assertEqual(state, "ERROR")
        self.assertIn("ActionFailed", json.dumps(out) + info)

    def test_hang(self):
        _, state, info, out = self._task("wf_hang", "ERROR")
        SEEN["hang"] = [info, out]
        self.assertEqual(state, "ERROR")
        self.assertIn("Timeout", json.dumps(out) + info)

    def test_find_all(self):
        provider = action_service.get_system_action_provider()
        specs = {d.name: d.params_spec for d in provider.find_all(namespace="")
                 if d.name.startswith("flow.")}
        SEEN["find_all"] = specs
        self.assertEqual(specs["flow.count"], "text, min_length=1, tags=null")
        self.assertEqual(specs["flow.boom"], "value=null, **kwargs")
        self.assertEqual(specs["flow.hang"], "**kwargs")


def main():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(SandboxEngineTest)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    sys.stdout.write("RESULT " + json.dumps({
        "ran": result.testsRun,
        "failures": [str(t) + ": " + tb for t, tb in result.failures + result.errors],
        "seen": SEEN,
    }, default=str) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        from host import mistral as hm

        hm.close_shared_host()
    finally:
        os._exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
