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


def test_readme_layout_matches_the_tree():
    """Every folder and module of the package is in the README's Layout section, and every module named there
    exists."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Layout"):]
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    listed_modules = set(re.findall(r"\b(\w+)\.py\b", block)) | set(re.findall(r"\((\w+)[,)]", block))
    listed_modules |= {w for w in re.findall(r"\b(\w+)\b", block)}
    listed_dirs = set(re.findall(r"\b(\w+)/", block))
    modules = {p.stem for p in PACKAGE.rglob("*.py") if PLUGIN not in p.parents and not p.name.startswith("__")}
    dirs = {d.name for d in PACKAGE.rglob("*") if d.is_dir() and not d.name.startswith("__")
            and PLUGIN not in d.parents}
    assert not modules - listed_modules, f"README Layout lacks modules {sorted(modules - listed_modules)}"
    assert not dirs - listed_dirs, f"README Layout lacks folders {sorted(dirs - listed_dirs)}"
    named = set(re.findall(r"\b(\w+)\.py\b", block))
    assert named <= modules, f"README Layout names modules that do not exist: {sorted(named - modules)}"
