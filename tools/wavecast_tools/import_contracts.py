"""An import-linter contract type the built-in ones lack: no import cycle between modules.

`acyclic_siblings` forbids cycles between sibling *packages*, which a folder-per-domain layout
has by design (a router imports the shared dependencies, which know every domain). What
breaks a reader and an import order is a cycle between *modules*, so this contract finds the
strongly connected components of the module graph (Tarjan's algorithm, iterative) and fails
on any with more than one module. Function-level imports count: grimp reads them too, so
moving an import into a function does not hide a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grimp
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


class AcyclicModulesContract(Contract):
    """`type = acyclic_modules`; `modules`: the packages whose modules may not import each
    other in a cycle."""

    type_name = "acyclic_modules"
    modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        roots = list(self.modules)  # type: ignore[call-overload]
        inside = {m for m in graph.modules if any(m == r or m.startswith(r + ".") for r in roots)}
        edges = {
            m: [d for d in graph.find_modules_directly_imported_by(m) if d in inside]
            for m in inside
        }
        found = cycles(edges)
        return ContractCheck(kept=not found, metadata={"cycles": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for component in check.metadata["cycles"]:
            output.print_error("Modules that import each other in a cycle:", bold=True)
            for module in component:
                output.print_error(f"  {module}")
            output.new_line()
