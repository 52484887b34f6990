"""The package's structure (docs/design.md): layers that only point down, and no import cycles between modules.

The layers are the contract of ``.importlinter`` (run here with ``lint-imports``, so an upward import fails the
suite); cycles are found on the same import graph (grimp's, which import-linter builds), function-level imports
included.
"""
import os.path as osp
import shutil
import subprocess
import sys

import grimp

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_layers_only_point_down():
    lint = shutil.which('lint-imports') or osp.join(osp.dirname(sys.executable), 'lint-imports')
    proc = subprocess.run([lint, '--config', osp.join(REPO, '.importlinter')], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert 'Contracts: 1 kept, 0 broken.' in proc.stdout


def _cycles(graph, modules):
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_no_import_cycles():
    graph = grimp.build_graph('promptir_basicsr')
    modules = {m for m in graph.modules if m.startswith('promptir_basicsr')}
    # a package's __init__ importing its own submodules is not a cycle of the design
    for module in list(modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith(module + '.'):
                graph.remove_import(importer=module, imported=imported)
    assert _cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = grimp.ImportGraph()
    for module in ('p.a', 'p.b', 'p.c'):
        graph.add_module(module)
    graph.add_import(importer='p.a', imported='p.b')
    graph.add_import(importer='p.b', imported='p.c')
    assert _cycles(graph, {'p.a', 'p.b', 'p.c'}) == []
    graph.add_import(importer='p.c', imported='p.a')
    assert _cycles(graph, {'p.a', 'p.b', 'p.c'}) == [['p.a', 'p.b', 'p.c']]
