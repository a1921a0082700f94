"""No import circles between a crate's top-level modules.

Usage: python scripts/check_module_cycles.py SRC_DIR [SRC_DIR ...]

A module `a` depends on `b` when its code (outside comments and its
`#[cfg(test)]` modules) names `crate::b`. Every circle among those edges
is printed and the exit status is 1; the layers (a module only reaching
the ones below it) are what a reader of the harness or of site-build can
follow from the bottom up.
"""

import re
import sys
from pathlib import Path

_COMMENT = re.compile(r"//[^\n]*")
_TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+[a-z_0-9]+\s*\{")
_CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z_0-9]*)")


def strip_test_modules(text: str) -> str:
    """The text without inline `#[cfg(test)] mod x { ... }` blocks."""
    out, pos = [], 0
    for match in _TEST_MODULE.finditer(text):
        if match.start() < pos:
            continue
        out.append(text[pos : match.start()])
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        pos = i
    out.append(text[pos:])
    return "".join(out)


def module_graph(src: Path) -> dict[str, set[str]]:
    sources: dict[str, list[str]] = {}
    lib = src / "lib.rs"
    declared = lib.read_text() if lib.exists() else ""
    test_only = set(re.findall(r"#\[cfg\(test\)\]\s*mod\s+([a-z_0-9]+)\s*;", declared))
    for path in sorted(src.rglob("*.rs")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[0] == "bin" or parts[-1] in ("lib", "main") and len(parts) == 1:
            continue
        top = parts[0]
        if top in test_only:
            continue
        text = strip_test_modules(_COMMENT.sub("", path.read_text()))
        sources.setdefault(top, []).append(text)
    graph = {m: set() for m in sources}
    for module, texts in sources.items():
        for text in texts:
            for dep in _CRATE_PATH.findall(text):
                if dep in graph and dep != module:
                    graph[module].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main(argv: list[str]) -> int:
    failed = False
    for arg in argv:
        graph = module_graph(Path(arg))
        found = cycles(graph)
        for component in found:
            failed = True
            edges = ", ".join(f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component)
            print(f"{arg}: modules import each other in a circle: {edges}")
        if not found:
            print(f"{arg}: {len(graph)} modules, no import circle")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
