"""Running the code blocks of a docs page: the workspace the pages assume, the blocks, and the flag check of the
blocks that need a GPU cluster (every emotion2vec and torchrun option parsed, nothing run)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLUSTER = ("--device cuda", "srun ", "--nnodes", "#SBATCH")


def blocks(page: str, lang: str) -> list[str]:
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def needs_cluster(block: str) -> bool:
    return any(marker in block for marker in CLUSTER)


def workspace(base: Path, fixtures: Path, urdu: Path, per_class: int = 10) -> Path:
    """checkpoints/emotion2vec_base.pt (tiny), checkpoints/emotion2vec_plus_base, data/urdu (``per_class`` clips of
    each emotion, the corpus's layout), manifests/urdu (prepared), recipes/."""
    from emotion2vec.cli import main as cli

    (base / "checkpoints").mkdir(parents=True)
    (base / "checkpoints" / "emotion2vec_base.pt").symlink_to(fixtures / "tiny_emotion2vec.pt")
    (base / "checkpoints" / "emotion2vec_plus_base").symlink_to(fixtures / "funasr_emotion2vec_plus")
    (base / "recipes").symlink_to(REPO / "recipes")
    for label in ("Angry", "Happy", "Neutral", "Sad"):
        (base / "data" / "urdu" / label).mkdir(parents=True)
        for f in sorted((urdu / label).glob("*.wav"))[:per_class]:
            (base / "data" / "urdu" / label / f.name).symlink_to(f)
    assert cli(["prepare", "urdu", "--root", str(base / "data" / "urdu"), "--out", str(base / "manifests" / "urdu"),
                "--no-audio-audit", "--quiet"]) == 0
    return base


def env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return dict(os.environ, PATH=path, PYTHONPATH=pythonpath, PYTHON=sys.executable, OMP_NUM_THREADS="1",
                MKL_NUM_THREADS="1", **extra)


def run_bash(block: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{block}\n--- stderr:\n{proc.stderr[-4000:]}"
    return proc


def run_python(block: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", block], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{block}\n--- stderr:\n{proc.stderr[-4000:]}"
    return proc


def _lines(block: str) -> list[str]:
    """Shell lines, continuations joined, comments and blank lines left out."""
    out, current = [], ""
    for raw in block.splitlines():
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current} {line.strip()}" if current else line.strip()
        if current.endswith("\\"):
            current = current[:-1].rstrip()
            continue
        out.append(current)
        current = ""
    return out


def _parse_emotion2vec(argv: list[str], where: str) -> None:
    from emotion2vec.cli import build_parser

    try:
        build_parser(argv[0]).parse_args(argv)
    except SystemExit as e:
        raise AssertionError(f"{where}: emotion2vec {' '.join(argv)}: refused (exit {e.code})") from None


def check_flags(block: str) -> int:
    """Parse every torchrun / emotion2vec command of ``block`` and the option lists a recipe call passes
    (LABEL_ARGS, FINETUNE_ARGS). -> number of commands checked."""
    from torch.distributed.run import get_args_parser

    checked = 0
    for line in _lines(block):
        words = shlex.split(line)
        assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
        if any(w.endswith("data_engine.sh") for w in words):
            if "LABEL_ARGS" in assignments:
                _parse_emotion2vec(["pseudo-label", "m", "--input", "x", "--out", "y",
                                    *shlex.split(assignments["LABEL_ARGS"])], line)
                checked += 1
            if "FINETUNE_ARGS" in assignments:
                _parse_emotion2vec(["finetune", "--checkpoint", "c", "--data", "d", "--out", "o",
                                    *shlex.split(assignments["FINETUNE_ARGS"])], line)
                checked += 1
            continue
        if "torchrun" in words:
            rest = words[words.index("torchrun") + 1:]
            args = get_args_parser().parse_args(rest)
            assert args.module and args.training_script == "emotion2vec", line
            _parse_emotion2vec(list(args.training_script_args), line)
            checked += 1
        elif words and words[0] == "emotion2vec":
            _parse_emotion2vec(words[1:], line)
            checked += 1
    return checked
