"""The package's shape: stages as folders, no import cycles, a torch-free CLI parser, a torch-only core."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "emotion2vec"
PLUGIN = PACKAGE / "pretrain" / "_fairseq"


def _modules() -> dict[str, Path]:
    """module name -> file, for every module of the package except the fairseq plugin."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if PLUGIN in path.parents or path.name == "__main__.py":
            continue
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules imported anywhere in ``path`` (module level or inside functions)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    # a package __init__ that only defines light names is imported by its submodules: not an edge of a cycle
    # unless the __init__ itself imports a submodule, which the graph records.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycle = stack[stack.index(m):] + [m]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if not state.get(m):
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if not state.get(n):
            visit(n)


def test_only_the_cli_builds_argument_parsers():
    offenders = [str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
                 if "ArgumentParser(" in p.read_text() and (PACKAGE / "cli") not in p.parents]
    assert offenders == []


def test_core_imports_neither_fairseq_nor_torchaudio():
    names = sorted(_modules())
    code = ("import importlib, sys\n"
            f"for m in {names!r}: importlib.import_module(m)\n"
            "print([m for m in sys.modules if m.split('.')[0] in ('fairseq', 'torchaudio')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


#: what no parser may import, so that `emotion2vec COMMAND --help` answers at once (numpy is allowed: prepare's
#: corpus table reads the audio module)
HEAVY_MODULES = ("torch", "torchaudio", "fairseq", "hydra", "omegaconf", "transformers", "onnx", "onnxruntime",
                 "opensmile", "sklearn", "scipy", "matplotlib", "safetensors", "soundfile", "soxr", "av")


def test_help_imports_no_torch():
    code = ("import sys\nfrom emotion2vec.cli import COMMANDS, main\n"
            "for argv in [['--help']] + [[c, '--help'] for c in COMMANDS]:\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
            f"print('IMPORTED', sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY_MODULES!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "IMPORTED []", out.stdout[-500:]
    # the check itself sees an import: the same loop after one heavy import reports it
    probe = subprocess.run([sys.executable, "-c", "import soundfile\n" + code], capture_output=True, text=True,
                           check=True, cwd=REPO)
    assert probe.stdout.strip().splitlines()[-1] == "IMPORTED ['soundfile']"


LAYOUT_PAGE = REPO / "docs" / "architecture.md"
_ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[\w.]+(?:/|\.py))(?:\s{2,}|\s*$)(?P<rest>.*)$")


def _layout_block() -> list[str]:
    text = LAYOUT_PAGE.read_text(encoding="utf-8")
    section = text[text.index("## Layout"):]
    block = section[section.index("```\n") + 4:]
    return block[:block.index("```")].splitlines()


def parse_layout(lines: list[str]) -> tuple[set[str], set[str], set[str]]:
    """(modules, packages, top-level folders) the layout names, as dotted paths (``emotion2vec.io.audio``).

    An entry is a name ending in ``/`` or ``.py`` at the start of a line, nested under the folder above it by two
    more spaces; its description (the rest of the line and the continuation lines indented past the entries) names
    the folder's modules (``audio.py``) and sub-folders (``_fairseq/``)."""
    modules, packages, top = set(), set(), set()
    stack: list[tuple[int, str]] = []  # (indent, dotted folder)
    current = None  # the folder a description belongs to
    for line in lines:
        m = _ENTRY.match(line)
        if m and len(m["indent"]) < 20:
            indent, name = len(m["indent"]), m["name"]
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else None
            if parent is None:
                if name.endswith("/") and name != "emotion2vec/":
                    for word in line.split():  # the leading folder names: "checkpoints/ manifests/   where ..."
                        if not word.endswith("/"):
                            break
                        top.add(word.rstrip("/"))
                    current = None
                    continue
                if name == "emotion2vec/":
                    stack.append((indent, "emotion2vec"))
                    packages.add("emotion2vec")
                    current = None
                    continue
            if parent is None:
                continue
            if name.endswith(".py"):
                modules.add(f"{parent}.{name[:-3]}")
                current = parent
            else:
                current = f"{parent}.{name[:-1]}"
                packages.add(current)
                stack.append((indent, current))
            rest = m["rest"]
        else:
            rest = line
        if current is None:
            continue
        modules |= {f"{current}.{mod}" for mod in re.findall(r"(?<![\w./])(\w+)\.py\b", rest)}
        packages |= {f"{current}.{sub}" for sub in re.findall(r"(?<![\w./])(\w+)/(?=[\s,)]|$)", rest)}
    return modules, packages, top


def test_parse_layout_reads_entries_descriptions_and_nesting():
    lines = ["emotion2vec/", "  api.py   the API", "  io/      audio.py (x), atomic.py", "           manifests.py (y)",
             "    sub/   deep.py, inner/ (z)", "  cli/     one per command:", "           prepare.py, extract.py",
             "configs/  a.yaml", "benchmarks/  tests/  docs/ (x)"]
    modules, packages, top = parse_layout(lines)
    assert modules == {"emotion2vec.api", "emotion2vec.io.audio", "emotion2vec.io.atomic", "emotion2vec.io.manifests",
                       "emotion2vec.io.sub.deep", "emotion2vec.cli.prepare", "emotion2vec.cli.extract"}
    assert packages == {"emotion2vec", "emotion2vec.io", "emotion2vec.io.sub", "emotion2vec.io.sub.inner",
                        "emotion2vec.cli"}
    assert top == {"configs", "benchmarks", "tests", "docs"}


def test_layout_page_matches_the_tree():
    """Every module and folder of the package is in docs/architecture.md's Layout at its real path, and every module,
    folder and top-level folder named there exists (the fairseq plugin's own modules are left to its folder)."""
    modules, packages, top = parse_layout(_layout_block())
    tree_modules = {name for name, path in _modules().items() if path.name != "__init__.py"}
    tree_packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    tree_packages.add("emotion2vec.pretrain._fairseq")
    assert not tree_modules - modules, f"the Layout lacks modules {sorted(tree_modules - modules)}"
    assert not modules - tree_modules, f"the Layout names modules that do not exist: {sorted(modules - tree_modules)}"
    assert not tree_packages - packages, f"the Layout lacks folders {sorted(tree_packages - packages)}"
    assert not packages - tree_packages, f"the Layout names folders that do not exist: {sorted(packages - tree_packages)}"
    missing_top = sorted(d for d in top if not (REPO / d).is_dir())
    assert not missing_top, f"the Layout names top-level folders that do not exist: {missing_top}"
