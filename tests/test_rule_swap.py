"""A rule path swapped for a symlink between the worker's check and Landlock's open is refused.

The worker checks every rule path (:mod:`policies.paths`) and then the Landlock layer opens it
with ``O_PATH``, which follows symlinks. An earlier worker of the same provider that can write
beneath a read rule's directory could, in between, replace a component with a symlink to ``/``,
a home or the host's state, and the rule would grant that. Each test here does the swap for
real between the two steps, in a forked child, and applies the real layer; the layer must
refuse (the worker then does not start: Landlock is a required layer).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from policies import Policy
from policies.paths import check_rule_path
from sandbox.layers import LayerContext, landlock
from tests.forking import in_child
from tests.test_layer_landlock import _runtime_paths

ABI = landlock.abi_version()

pytestmark = pytest.mark.skipif(ABI < 1, reason=f"needs Landlock, kernel has ABI {ABI}")


def _apply_after_swap(tmp: Path, rule: Path, swap_to: str, state: Path) -> str:
    """Check ``rule`` as the worker does, swap it for a symlink to ``swap_to``, apply the
    layer; return "applied: <readable?>" or "refused: <message>"."""
    work = tmp / "work"
    work.mkdir(exist_ok=True)

    def body() -> str:
        check_rule_path(str(rule), "policy.read", [str(state)])  # passes: a plain directory
        os.rename(rule, tmp / "moved")
        os.symlink(swap_to, rule)
        context = LayerContext(
            workdir=str(work),
            read_paths=(*_runtime_paths(tmp), str(rule)),
            write_paths=(str(work),),
            state=(str(state),),
        )
        try:
            landlock.apply(Policy(), context)
        except landlock.LayerError as exc:
            return f"refused: {exc}"
        return f"applied: listing {swap_to} gives {len(os.listdir(swap_to))} entries"

    result: str = in_child(body)
    return result


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    rule = tmp_path / "rule"
    rule.mkdir()
    (rule / "data.txt").write_text("readable")
    state = tmp_path / "state"
    (state / "ipc").mkdir(parents=True)
    return tmp_path, rule, state


@pytest.mark.parametrize("target", ["/", "/root", "STATE"])
def test_a_rule_swapped_for_a_symlink_after_the_check_is_refused(
    layout: tuple[Path, Path, Path], target: str
) -> None:
    tmp, rule, state = layout
    swap_to = str(state) if target == "STATE" else target
    result = _apply_after_swap(tmp, rule, swap_to, state)
    assert result.startswith("refused: "), result
    assert repr(str(rule)) in result and repr(swap_to) in result


def test_a_parent_component_swapped_after_the_check_is_refused(tmp_path: Path) -> None:
    """The swapped component need not be the last one: ``parent/root`` with ``parent`` -> ``/``
    opens ``/root``."""
    parent = tmp_path / "parent"
    (parent / "root").mkdir(parents=True)
    state = tmp_path / "state"
    state.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    rule = parent / "root"

    def body() -> str:
        check_rule_path(str(rule), "policy.read", [str(state)])
        os.rename(parent, tmp_path / "moved")
        os.symlink("/", parent)
        context = LayerContext(
            workdir=str(work), read_paths=(*_runtime_paths(tmp_path), str(rule)),
            write_paths=(str(work),), state=(str(state),),
        )
        try:
            landlock.apply(Policy(), context)
        except landlock.LayerError as exc:
            return f"refused: {exc}"
        return "applied"

    result = in_child(body)
    assert result.startswith("refused: ") and "'/root'" in result, result


def test_a_symlink_to_a_safe_place_is_still_granted(layout: tuple[Path, Path, Path]) -> None:
    """The second check refuses only what the first would have: a link to a plain directory
    (here the moved original) is granted and readable."""
    tmp, rule, state = layout
    result = _apply_after_swap(tmp, rule, str(tmp / "moved"), state)
    assert result == f"applied: listing {tmp / 'moved'} gives 1 entries"
