"""No import cycles between the modules of ``ivr``.

Every import counts: at the top of a module, inside a function or under ``TYPE_CHECKING``
(moving an import into a function only hides a cycle, it does not remove it). The graph is
grimp's (it reads the source, it does not import it); the strongly connected components are
found here, so a failure names every module of each cycle and the lines that import.
"""

from __future__ import annotations

import grimp


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Each group of modules that import one another, directly or not (Tarjan's algorithm,
    iterative: a long chain of imports must not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, imported = work[-1]
            step = next(imported, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(graph.find_modules_directly_imported_by(step)))))
                elif step in on_stack:
                    low[module] = min(low[module], index[step])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    cycles.append(sorted(group))
    return cycles


def _explain(graph: grimp.ImportGraph, group: list[str]) -> str:
    lines = [" <-> ".join(group)]
    for importer in group:
        for imported in group:
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(f"  {importer}:{detail['line_number']}: {detail['line_contents']}")
    return "\n".join(lines)


def test_no_import_cycles_between_ivr_modules() -> None:
    graph = grimp.build_graph("ivr", cache_dir=None)
    assert len(graph.modules) > 100  # the whole package was read
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_explain(graph, group) for group in cycles)


def test_the_check_finds_direct_indirect_and_self_contained_cycles() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.a"),                 # direct
                               ("p.c", "p.d"), ("p.d", "p.e"), ("p.e", "p.c"),  # through a third
                               ("p.e", "p.f"), ("p.f", "p.g")]:                  # no cycle beyond
        graph.add_import(importer=importer, imported=imported)
    assert sorted(import_cycles(graph)) == [["p.a", "p.b"], ["p.c", "p.d", "p.e"]]
