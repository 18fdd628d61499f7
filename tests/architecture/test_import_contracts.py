"""The module-cycle finder behind the `acyclic_modules` import contract, and the contracts
themselves on the code as it is."""

from __future__ import annotations

import random
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st
from wavecast_tools.import_contracts import cycles


def test_no_edges_no_cycles() -> None:
    assert cycles({"a": [], "b": ["a"], "c": ["b", "a"]}) == []


def test_a_two_module_cycle_and_a_self_contained_rest() -> None:
    assert cycles({"a": ["b"], "b": ["a"], "c": ["a"]}) == [["a", "b"]]


def test_separate_cycles_are_reported_apart() -> None:
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "x": ["y"], "y": ["x"], "z": ["a", "x"]}
    assert cycles(edges) == [["a", "b", "c"], ["x", "y"]]


def test_a_long_chain_does_not_exhaust_the_stack() -> None:
    n = 20_000
    edges = {f"m{i}": [f"m{i + 1}"] for i in range(n)}
    edges[f"m{n}"] = ["m0"]
    (component,) = cycles(edges)
    assert len(component) == n + 1


def _reaches(edges: dict[str, list[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        for nxt in edges.get(node, []):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


@given(st.integers(2, 12), st.integers(0, 40), st.randoms(use_true_random=False))
def test_components_are_exactly_the_mutually_reachable_modules(
    n: int, m: int, chance: random.Random
) -> None:
    nodes = [f"n{i}" for i in range(n)]
    edges: dict[str, list[str]] = {x: [] for x in nodes}
    for _ in range(m):
        a, b = chance.choice(nodes), chance.choice(nodes)
        if a != b:
            edges[a].append(b)
    found = cycles(edges)
    together = {frozenset(c) for c in found}
    for a in nodes:
        for b in nodes:
            mutual = a != b and _reaches(edges, a, b) and _reaches(edges, b, a)
            same = a != b and any(a in c and b in c for c in together)
            assert mutual == same


def test_the_code_keeps_its_import_contracts() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "importlinter.cli", "--no-cache"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
