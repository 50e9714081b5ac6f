"""Every ```bash and ```python block of README.md and docs/*.md runs as written, page by page.

How a page runs
    Each page gets a fresh workspace that stands for the repository root as README's "Conventions" describe it
    (``checkpoints/``, ``data/urdu``, ``manifests/urdu``; ``configs/``, ``recipes/`` and ``docs/`` link to the
    repository's), and its blocks run there in order, so a block may use only what the page's earlier blocks (or the
    Conventions block, run once for every workspace) made. bash blocks run in bash with ``set -eo pipefail``;
    ``emotion2vec`` there (and the recipes' ``$E2V``) is a shell function that calls back into this test process,
    which runs ``emotion2vec.cli.main(argv)`` in-process after the substitutions below. python blocks run in-process
    with the workspace as working directory. Whatever a page leaves at the top of its workspace must be ignored by
    git, as it would be in a clone.

The substitutions (SUBSTITUTIONS, the only differences between the docs and what runs)
    * downloaded models -> golden fixtures ($E2V_SHARED/fixtures/checkpoints): ``checkpoints/emotion2vec_base.pt``
      -> ``tiny_emotion2vec.pt``, ``checkpoints/emotion2vec_plus_base`` -> ``funasr_emotion2vec_plus/``,
      ``checkpoints/audio_base_ls.pt`` -> ``data2vec1_audio.pt``, ``checkpoints/base_libri.pt`` ->
      ``legacy_data2vec2.pt``;
    * Hugging Face hub names (``hf:facebook/wav2vec2-base``, ``text:bert-base-uncased``, ...) -> a tiny random model
      of the same class made by ``docs/scripts/random_hf_model.py`` (nothing is downloaded);
    * corpora: ``data/urdu`` -> a 52-clip subset of URDU (13 per emotion, the first second of each);
      ``IEMOCAP_full_release`` -> a tree in IEMOCAP's layout (5 sessions, 2 dialogues of 10 alternating turns each,
      votes, dimensions, transcripts) whose audio is 0.6 s of URDU clips; ``EmoBox/data/urdu`` -> EmoBox's URDU folds
      restricted to the subset;
    * your recordings: ``my_wavs/``, ``recordings/`` (4 URDU clips each), ``speech.wav``, ``other.flac`` (URDU
      clips), ``talk.wav`` (6 URDU clips end to end);
    * shorter runs: ``probe``, ``finetune`` and ``conversation`` run 1 epoch (``--epochs 1``); ``finetune`` and
      ``robustness`` their first fold (``--folds 1``) unless the block picks folds (or trains ``--task speaker``,
      which has one fold); a ``probe`` sweep (``--train-fraction``, ``--seeds``) its first fold too;
      ``pretrain`` runs 4 updates (``optimization.max_update=4``, warm-up 1, a checkpoint every 2);
    * the CPU: ``--device cuda*`` -> ``cpu``, ``--dtype bfloat16`` -> ``float32``; recipes get ``DEVICE=cpu``;
    * the test material: ``$E2V_SHARED`` is set to the folder the tests read (``tests/conftest.py``).

Blocks that cannot run here (LISTED: page, a text found in exactly that block, the reason)
    They run in a checking shell instead: every ``emotion2vec`` line is parsed by that command's own parser
    (``emotion2vec.cli.build_parser``), ``emotion2vec pretrain`` and ``fairseq-hydra-train`` overrides are composed
    against ``configs/`` and pass the configuration checks as on a machine with 8 GPUs, ``torchrun`` lines are parsed
    by torch's launcher and their program checked the same way, ``pip install`` extras and pins must match setup.py
    and the Makefile, ``make`` targets must exist; other recipes run with ``emotion2vec`` checked, not executed.
    Recipes that read corpora (run_all.sh, corpus.sh, pretrain_data.sh) are checked instead: their corpora, feature
    sources, and the extra arguments they pass to each step (PREPARE_ARGS, EXTRACT_ARGS, PROBE_ARGS). Whatever else
    the block does runs as written. A block that is neither run nor listed fails its page.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import FIXTURES, URDU, require

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + [f"docs/{p.name}" for p in sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 250
PREREQUISITE = ("README.md", "emotion2vec prepare urdu --root data/urdu --out manifests/urdu")

LISTED: dict[tuple[str, str], str] = {
    ("README.md", "python3 -m venv .venv"): "installs packages and downloads a model over the network",
    ("README.md", "git clone https://github.com/siddiquelatif/URDU-Dataset"): "downloads the corpus over the network",
    ("README.md", "make demo"): "installs into .venv and runs the 9-minute demo (tests/test_demo.py runs it shortened) "
                                "and the suite itself",
    ("docs/demo.md", "DEMO_FAST=1 make demo"): "the full demo runs about 9 minutes; tests/test_demo.py runs the "
                                               "shortened one",
    ("docs/finetuning.md", "torchrun --nproc_per_node 4"): "launches 4 and 2 x 4 processes (GPUs, two machines); "
                                                           "tests/test_finetune.py runs DDP with two CPU processes",
    ("docs/paper.md", "SOURCES="): "needs 7 licensed corpora and the released weights (several GB)",
    ("docs/paper.md", "TABLE_METRICS=wa,ua,macro_f1"): "needs 6 licensed corpora and ten released upstreams "
                                                       "(tens of GB)",
    ("docs/paper.md", "recipes/pretrain_data.sh"): "needs the five corpora of the 262-hour pretraining set",
    ("docs/paper.md", "recipes/ablation.sh alpha_0.1"): "100 000 updates on 4 GPUs over the 262-hour set",
    ("docs/pretraining.md", "fairseq-hydra-train $ARGS model.init_from=null"): "the official configuration: 4 GPUs, "
                                                                               "fp16, the 262-hour set",
    ("docs/pretraining.md", "# the official run: 4 GPUs"): "the official configuration on GPUs and several machines",
    ("docs/papers.md", "prepare voxceleb1"): "VoxCeleb1 and IEMOCAP (licensed), a downloaded model and a GPU",
    ("docs/papers.md", "prepare msp-improv"): "EMO-SUPERB's corpora (licensed), a downloaded model and a GPU",
    ("docs/papers.md", "prepare mosi --root data/CMU-MOSI"): "CMU-MOSI and MSP-Podcast (licensed)",
    ("docs/papers.md", "--out results/msp_podcast/cnn14"): "MSP-Podcast (licensed) and a GPU",
    ("docs/papers.md", "hf:facebook/wav2vec2-large-robust --data manifests/msp_podcast"):
        "a model fine-tuned on MSP-Podcast (licensed)",
    ("docs/papers.md", "prepare ravdess"): "RAVDESS and six downloaded models on a GPU",
    ("docs/papers.md", "hf:facebook/wav2vec2-large-960h-lv60-self hf:facebook/wav2vec2-large-xlsr-53"):
        "six downloaded models, a GPU",
    ("docs/pretraining.md", "torchrun --nproc_per_node 2 $(which fairseq-hydra-train)"):
        "a torchrun launch of two fairseq processes; tests/test_fairseq_plugin.py runs it (4 updates)",
}

#: pages whose blocks another test runs as written, because they need what this runner does not do (servers in
#: the background, clients against them): page -> that test (test_pages_run_elsewhere_have_their_test checks it)
RUN_ELSEWHERE: dict[str, str] = {
    "docs/serve.md": "tests/test_serve.py::test_docs_page_commands_run_as_written",
    "docs/distributed.md": "tests/test_distributed.py::test_the_distributed_page_runs_as_written",
    "docs/data-engine.md": "tests/test_data_engine.py::test_the_rest_of_the_page_runs_as_written",
    "docs/evaluation-workflows.md": "tests/test_workflows.py::test_the_docs_page_runs_as_written",
    "docs/troubleshooting.md": "tests/test_bad_inputs.py::test_troubleshooting_page_runs_as_written",
}

MODELS = {  # workspace path -> golden fixture
    "checkpoints/emotion2vec_base.pt": "tiny_emotion2vec.pt",
    "checkpoints/emotion2vec_plus_base": "funasr_emotion2vec_plus",
    "checkpoints/audio_base_ls.pt": "data2vec1_audio.pt",
    "checkpoints/base_libri.pt": "legacy_data2vec2.pt",
}
LINKED_FROM_REPO = ("configs", "recipes", "docs", "benchmarks")
HUB_KINDS = [("wav2vec2", "large", "wav2vec2-large"), ("wav2vec2", "", "wav2vec2"), ("hubert", "", "hubert"),
             ("wavlm", "large", "wavlm-large"), ("wavlm", "", "wavlm"), ("data2vec-audio", "", "data2vec-audio"),
             ("unispeech-sat", "", "unispeech-sat"), ("unispeech", "", "unispeech"), ("whisper", "", "whisper")]
EPOCHS = "1"
SUBSET_PER_EMOTION = 13  # 52 clips: 5 or 6 test utterances in each of the 10 folds (a 2-D map needs 5)
CLIP_SECONDS = 1.0  # each clip's beginning (URDU's clips last 2-3 s)
IEMOCAP_SECONDS = 0.6  # each utterance of the IEMOCAP-layout tree
PRETRAIN_UPDATES = {"optimization.max_update": "4", "lr_scheduler.warmup_updates": "1",
                    "checkpoint.save_interval_updates": "2", "common.log_interval": "1"}


# ------------------------------------------------------------------------------------------------ the blocks
@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    heading: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.heading})"


_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")


def read_blocks(page: str) -> list[Block]:
    """Every fenced block of a page, with the heading it sits under."""
    lines = (REPO / page).read_text(encoding="utf-8").splitlines()
    blocks, heading, i = [], "", 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if lines[i].startswith("#"):
            heading = lines[i].lstrip("#").strip()
        if m:
            indent, j = m["indent"], i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            assert j < len(lines), f"{page}:{i + 1}: unclosed code block"
            body = [s[len(indent):] if s.startswith(indent) else s.lstrip() for s in lines[i + 1:j]]
            blocks.append(Block(page, i + 1, m["lang"], "\n".join(body) + "\n", heading))
            i = j
        i += 1
    return blocks


def listed_reason(block: Block) -> str | None:
    hits = [reason for (page, marker), reason in LISTED.items() if page == block.page and marker in block.code]
    assert len(hits) <= 1, f"{block}: several LISTED markers match it"
    return hits[0] if hits else None


def is_prerequisite(block: Block) -> bool:
    return block.page == PREREQUISITE[0] and PREREQUISITE[1] in block.code


# ------------------------------------------------------------------------------------------------ the workspace
def _urdu_subset(root: Path) -> list[Path]:
    clips = []
    for emotion in ("Angry", "Happy", "Neutral", "Sad"):
        for src in sorted((URDU / emotion).glob("*.wav"))[::7][:SUBSET_PER_EMOTION]:
            dst = root / "data" / "urdu" / emotion / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            wav, sr = sf.read(src, dtype="int16")
            sf.write(dst, wav[:int(CLIP_SECONDS * sr)], sr, subtype="PCM_16")  # a file as a user has it, shorter
            clips.append(dst)
    return clips


_IEMO_LABELS = ["neu", "ang", "hap", "sad", "exc", "neu", "ang", "sad", "hap", "fru"]
_IEMO_VOTE = {"neu": "Neutral", "ang": "Anger", "hap": "Happiness", "sad": "Sadness", "exc": "Excited",
              "fru": "Frustration"}
_IEMO_WORDS = ["i am so happy today", "you are not calm", "well that is sad", "no", "yes we are", "what"]


def _iemocap(root: Path, clips: list[Path]) -> None:
    """IEMOCAP's layout: per session two dialogues of 10 turns alternating F / M, labels, votes, [V, A, D] and
    transcripts; audio: the beginning of URDU clips."""
    base = root / "IEMOCAP_full_release"
    k = 0
    for n in range(1, 6):
        for d, dialog in enumerate((f"Ses0{n}F_impro01", f"Ses0{n}M_script01_1")):
            emo_lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"]
            words = []
            for i in range(10):
                gender = "FM"[(i + d) % 2]
                utt = f"{dialog}_{gender}{i:03d}"
                label = _IEMO_LABELS[(i + 3 * n + d) % len(_IEMO_LABELS)]
                v, a, dom = 1 + (i % 5), 1 + ((i + n) % 5), 1 + ((i + d) % 5)
                start = 3.0 * i
                emo_lines.append(f"[{start:.4f} - {start + 1:.4f}]\t{utt}\t{label}\t[{v}.0000, {a}.0000, {dom}.0000]\n"
                                 f"C-E1:\t{_IEMO_VOTE[label]};\t()\nC-E2:\t{_IEMO_VOTE[label]};\t()\n"
                                 f"C-E3:\t{_IEMO_VOTE[_IEMO_LABELS[(i + 1) % 10]]};\t()\n\n")
                words.append(f"{utt} [{start:08.4f}-{start + 1:08.4f}]: {_IEMO_WORDS[(i + n) % len(_IEMO_WORDS)]}\n")
                wav, sr = sf.read(clips[k % len(clips)], dtype="float32")
                k += 7
                out = base / f"Session{n}" / "sentences" / "wav" / dialog / f"{utt}.wav"
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(out, wav[:int(IEMOCAP_SECONDS * sr)], sr)
            for sub, text in (("EmoEvaluation", emo_lines), ("transcriptions", words)):
                folder = base / f"Session{n}" / "dialog" / sub
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{dialog}.txt").write_text("".join(text))


def _emobox(root: Path, clips: list[Path]) -> None:
    """EmoBox's URDU folder (the EmoBox repository's data/urdu) with only the entries of the subset's clips."""
    src = require(URDU.parent / "emobox" / "urdu", "EmoBox URDU folds")
    keep = {f"urdu-{c.stem}" for c in clips}
    key = re.compile(r"urdu-[A-Za-z0-9_]+")
    for path in src.rglob("*"):
        if path.is_dir():
            continue
        out = root / "EmoBox" / "data" / "urdu" / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json" and path.name != "label_map.json":
            data = json.loads(path.read_text())
            out.write_text(json.dumps({k: v for k, v in data.items() if k in keep}, indent=1))
        elif path.suffix in (".jsonl", ".stm", ".audmap"):
            lines = path.read_text().splitlines(keepends=True)
            out.write_text("".join(s for s in lines if not (m := key.search(s)) or m.group(0) in keep))
        else:
            shutil.copyfile(path, out)


@pytest.fixture(scope="session")
def hub_models(tmp_path_factory):
    """hub name -> a tiny random model of its class, made on first use."""
    return HubModels(tmp_path_factory.mktemp("hub"))


class HubModels:
    def __init__(self, root: Path):
        self.root, self.made = root, {}

    def kind(self, scheme: str, name: str) -> str:
        if scheme == "text":
            return "bert"
        for word, size, kind in HUB_KINDS:
            if word in name and size in name:
                return kind
        raise AssertionError(f"hf:{name}: no tiny stand-in for this class in the docs test (HUB_KINDS)")

    def path(self, scheme: str, name: str) -> Path:
        kind = self.kind(scheme, name)
        if kind not in self.made:
            sys.path.insert(0, str(REPO / "docs" / "scripts"))
            try:
                from random_hf_model import build
            finally:
                sys.path.pop(0)
            self.made[kind] = build(kind, self.root / kind, hidden=32, layers=2, heads=2, conv_dim=16)
        return self.made[kind]


@pytest.fixture(scope="session")
def base_workspace(tmp_path_factory):
    """The Conventions: checkpoints/, data/urdu, the corpora and recordings of the substitutions, and manifests/urdu
    from the prerequisite block."""
    require(FIXTURES, "golden checkpoint fixtures")
    require(URDU, "URDU corpus")
    ws = tmp_path_factory.mktemp("docs") / "base"
    ws.mkdir()
    for rel, fixture in MODELS.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).symlink_to(FIXTURES / fixture)
    for name in LINKED_FROM_REPO:
        (ws / name).symlink_to(REPO / name)
    clips = _urdu_subset(ws)
    for name in ("my_wavs", "recordings"):
        for c in clips[::14]:
            (ws / name).mkdir(exist_ok=True)
            shutil.copyfile(c, ws / name / c.name)
    shutil.copyfile(clips[0], ws / "speech.wav")
    wav, sr = sf.read(clips[11], dtype="float32")
    sf.write(ws / "other.flac", wav, sr)
    sf.write(ws / "talk.wav", np.concatenate([sf.read(c, dtype="float32")[0] for c in clips[::10]]), 44100)
    _iemocap(ws, clips)
    _emobox(ws, clips)
    prerequisite = [b for b in read_blocks(PREREQUISITE[0]) if is_prerequisite(b)]
    assert len(prerequisite) == 1, f"the prerequisite block {PREREQUISITE} is not in {PREREQUISITE[0]}"
    runner = Runner(ws, None)
    runner.bash(prerequisite[0], check_only=False)
    runner.raise_failures()
    return ws


# ------------------------------------------------------------------------------------------------ running blocks
_PRELUDE = r"""
_e2v_call() {  # KIND ARGS...: handled by the test process, which answers with an exit status
  local kind=$1; shift
  { printf '%s\0' "$kind" "$PWD" "$#"; [ $# -eq 0 ] || printf '%s\0' "$@"; } >&"$E2V_DOCS_REQ"
  local rc; read -r rc <&"$E2V_DOCS_RESP"; return "$rc"
}
emotion2vec() { _e2v_call emotion2vec "$@"; }
python() { case "${1:-}" in docs/scripts/*.py|benchmarks/*.py) _e2v_call python "$@" ;; *) command python "$@" ;; esac; }
python3() { case "${1:-}" in -m) [ "${2:-}" = venv ] && { _e2v_call venv "$@"; return; } ;; esac; command python3 "$@"; }
torchrun() { _e2v_call torchrun "$@"; }
fairseq-hydra-train() { _e2v_call fairseq-hydra-train "$@"; }
pip() { _e2v_call pip "$@"; }
git() { _e2v_call git "$@"; }
make() { _e2v_call make "$@"; }
tensorboard() { _e2v_call tensorboard "$@"; }
export -f _e2v_call emotion2vec python python3 torchrun fairseq-hydra-train pip git make tensorboard
"""
#: in the checking shell, the recipes that read corpora are checked instead of run: their arguments and the
#: variables they read come back to the test process
_PRELUDE_CHECK = r"""
_e2v_recipe() {
  local args=("$@" "--env--") v
  for v in $E2V_DOCS_RECIPE_VARS $(compgen -v ROOT_ || true); do [ -z "${!v+x}" ] || args+=("$v=${!v}"); done
  _e2v_call recipe "${args[@]}"
}
recipes/run_all.sh() { _e2v_recipe run_all "$@"; }
recipes/corpus.sh() { _e2v_recipe corpus "$@"; }
recipes/pretrain_data.sh() { _e2v_recipe pretrain_data "$@"; }
"""
RECIPE_VARS = ("ROOT DATA CHECKPOINT CHECKPOINTS CORPORA OUT NAME PROTOCOL GRANULARITY LAYERS PROBE_LAYER TASK "
               "TARGETS PREPARE_ARGS EXTRACT_ARGS PROBE_ARGS TABLE TABLE_METRICS FBANK FORCE IEMOCAP MELD MEAD MOSEI "
               "MSP_PODCAST AUDIO16K EXCLUDE WORKERS")


@dataclass
class Runner:
    """Runs a page's blocks in one workspace; ``emotion2vec`` lines come back here."""
    ws: Path
    hub: HubModels | None
    failures: list[str] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)
    check_only: bool = False
    block: Block | None = None

    # -- substitutions
    def hub_name(self, value: str, cwd: Path) -> str:
        m = re.fullmatch(r"(hf|text):([\w.-]+/[\w.-]+|bert-base-uncased|[\w-]*bert[\w.-]*)", value)
        if not m or (cwd / m.group(2)).exists() or self.hub is None:
            return value
        return f"{m.group(1)}:{self.hub.path(m.group(1), m.group(2))}"

    def substitute(self, argv: list[str], cwd: Path) -> list[str]:
        argv = [self.hub_name(a, cwd) for a in argv]
        command = next((a for a in argv if not a.startswith("-")), "")
        for i, a in enumerate(argv[:-1]):
            if a == "--device" and argv[i + 1].startswith("cuda"):
                argv[i + 1] = "cpu"
            if a == "--dtype" and argv[i + 1] == "bfloat16":
                argv[i + 1] = "float32"
        if command in ("probe", "finetune", "conversation"):
            argv = _set_option(argv, "--epochs", EPOCHS)
        if command in ("finetune", "robustness") and not {"--fold", "--folds"} & set(argv) and "speaker" not in argv:
            argv = argv + ["--folds", "1"]
        if command == "probe" and {"--train-fraction", "--seeds"} & set(argv) and "--folds" not in argv:
            argv = argv + ["--folds", "1"]
        if command == "pretrain":
            argv = [a for a in argv if a.split("=")[0] not in PRETRAIN_UPDATES]
            argv = argv + [f"{k}={v}" for k, v in PRETRAIN_UPDATES.items()]
        return argv

    # -- the handlers
    def handle(self, kind: str, cwd: Path, argv: list[str]) -> int:
        if kind == "emotion2vec" and not self.check_only:
            return self.run_cli(cwd, argv)
        if kind == "python" and not self.check_only:
            return self.run_script(cwd, argv)
        if not self.check_only:
            self.fail(f"runs `{kind} {shlex.join(argv)}`, which the docs test cannot run: run it differently or "
                      f"list the block in LISTED with the reason")
            return 127
        try:
            {"emotion2vec": check_cli, "torchrun": check_torchrun, "fairseq-hydra-train": check_fairseq,
             "pip": check_pip, "make": check_make, "git": check_git, "recipe": check_recipe, "venv": lambda a, c: None,
             "python": check_script, "tensorboard": lambda a, c: None}[kind](argv, cwd)
        except CheckError as e:
            self.fail(f"`{kind} {shlex.join(argv)}`: {e}")
        return 0

    def run_cli(self, cwd: Path, argv: list[str]) -> int:
        from emotion2vec.cli import main as cli

        argv = self.substitute(argv, cwd)
        self.calls.append(argv)
        old = os.getcwd()
        os.chdir(cwd)
        try:
            rc = cli(argv)
        finally:
            os.chdir(old)
        if rc != 0:
            self.fail(f"`emotion2vec {shlex.join(argv)}` exited {rc}")
        return rc

    def run_script(self, cwd: Path, argv: list[str]) -> int:
        argv = [argv[0]] + self.substitute(argv[1:], cwd)
        old, old_argv = os.getcwd(), sys.argv
        os.chdir(cwd)
        sys.argv = list(argv)
        try:
            runpy.run_path(argv[0], run_name="__main__")
            rc = 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            os.chdir(old)
            sys.argv = old_argv
        if rc:
            self.fail(f"`python {shlex.join(argv)}` exited {rc}")
        return rc

    def fail(self, message: str) -> None:
        self.failures.append(f"{self.block}: {message}")

    def raise_failures(self) -> None:
        if self.failures:
            pytest.fail("\n".join(self.failures), pytrace=False)

    # -- blocks
    def bash(self, block: Block, check_only: bool) -> None:
        self.block, self.check_only = block, check_only
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        bindir = str(Path(sys.executable).parent)
        env = dict(os.environ, E2V_SHARED=str(FIXTURES.parents[1]), E2V_DOCS_RECIPE_VARS=RECIPE_VARS,
                   E2V_DOCS_REQ=str(req_w), E2V_DOCS_RESP=str(resp_r), E2V="emotion2vec", DEVICE="cpu",
                   PYTHON=sys.executable, PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        if check_only:
            (self.ws / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
            (self.ws / ".venv" / "bin" / "activate").touch()
        log = self.ws.parent / f"{self.ws.name}.bash.log"
        with open(log, "w") as out:
            prelude = _PRELUDE + (_PRELUDE_CHECK if check_only else "") + "set -eo pipefail\n"
            proc = subprocess.Popen(["bash", "-c", prelude + block.code], cwd=self.ws, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, pass_fds=(req_w, resp_r))
        os.close(req_w)
        os.close(resp_r)
        with os.fdopen(req_r, "rb") as requests:
            while True:
                kind = _field(requests)
                if kind is None:
                    break
                cwd = Path(_field(requests))
                argv = [_field(requests) for _ in range(int(_field(requests)))]
                rc = self.handle(kind, cwd, argv)
                os.write(resp_w, f"{rc}\n".encode())
        os.close(resp_w)
        rc = proc.wait()
        if rc != 0 and not self.failures:
            self.fail(f"bash exited {rc}:\n{log.read_text()[-3000:]}")

    def python(self, block: Block) -> None:
        self.block = block
        code = re.sub(r"\b(hf|text):[\w./-]+", lambda m: self.hub_name(m.group(0), self.ws), block.code)
        old = os.getcwd()
        os.chdir(self.ws)
        try:
            exec(compile(code, str(block), "exec"), {"__name__": "__docs__"})
        except Exception as e:  # noqa: BLE001 - reported with the block
            self.fail(f"{type(e).__name__}: {e}")
        finally:
            os.chdir(old)


def _field(stream) -> str | None:
    buf = bytearray()
    while (c := stream.read(1)) != b"\0":
        if not c:
            assert not buf, "truncated request from bash"
            return None
        buf += c
    return buf.decode()


def _set_option(argv: list[str], option: str, value: str) -> list[str]:
    argv = [a for a in argv if not a.startswith(option + "=")]
    if option in argv:
        argv[argv.index(option) + 1] = value
        return argv
    return argv + [option, value]


# ------------------------------------------------------------------------------------------------ checks
class CheckError(Exception):
    pass


def check_cli(argv: list[str], cwd: Path) -> None:
    """The command's own parser accepts the line; pretraining overrides compose and pass the checks."""
    from emotion2vec.cli import COMMANDS, _join_signed_values, build_parser

    argv = _join_signed_values(list(argv))
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        raise CheckError(f"no command {command!r}")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = build_parser(command).parse_args(argv)
        except SystemExit as e:
            if e.code:
                raise CheckError(err.getvalue().strip().splitlines()[-1]) from None
            return
    if command == "pretrain":
        _check_config(args.config, args.overrides, args.config_dir, cwd)


def _fairseq_knows(key: str) -> bool:
    """``section.field`` is a field of fairseq's own configuration schema (what fairseq-hydra-train adds to ours)."""
    import dataclasses

    try:
        from fairseq.dataclass.configs import FairseqConfig
    except ImportError:
        return False
    section, _, name = key.lstrip("+").partition(".")
    node = getattr(FairseqConfig(), section, None)
    return dataclasses.is_dataclass(node) and name in {f.name for f in dataclasses.fields(node)}


def _check_config(name: str, overrides: list[str], config_dir: str | None, cwd: Path, fairseq: bool = False) -> None:
    """Compose ``configs/NAME`` with the overrides and run the configuration checks. With ``fairseq``, overrides of
    fields that only fairseq's own schema holds (fairseq-hydra-train merges it) are checked against that schema."""
    from unittest import mock

    import torch

    from emotion2vec.errors import Emotion2VecError
    from emotion2vec.pretrain.launch import _machine_problems, compose, config_problems

    overrides = [o for o in overrides if not o.startswith("common.user_dir=")]  # the launcher adds it
    if config_dir and not (cwd / config_dir).is_dir():
        raise CheckError(f"--config-dir {config_dir}: no such folder")
    while True:
        try:
            cfg = compose(name, overrides, (cwd / config_dir) if config_dir else None)
            break
        except Emotion2VecError as e:
            m = re.search(r"Could not override '([\w.]+)'", str(e))
            if not (fairseq and m and _fairseq_knows(m.group(1))):
                raise CheckError(str(e)) from None
            overrides = [o for o in overrides if o.split("=")[0].lstrip("+") != m.group(1)]
    # the configuration itself, then what it asks of a machine with 8 GPUs; the files it names (the data folder,
    # the downloaded init checkpoint) are on the machine that runs it, not here
    with mock.patch.object(torch.cuda, "device_count", return_value=8):
        problems = config_problems(cfg, machine=False) + _machine_problems(cfg, True)
    if problems:
        raise CheckError("; ".join(problems))


def check_fairseq(argv: list[str], cwd: Path) -> None:
    opts, overrides, i = {}, [], 0
    while i < len(argv):
        if argv[i] in ("--config-dir", "--config-name"):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            overrides.append(argv[i])
            i += 1
    if "--config-name" not in opts or any("=" not in o for o in overrides):
        raise CheckError("expected --config-dir DIR --config-name NAME and key=value overrides")
    if not any(o.startswith("common.user_dir=") and o.split("=", 1)[1] for o in overrides):
        raise CheckError("no common.user_dir=...: fairseq would not find the plugin")
    _check_config(opts["--config-name"], overrides, opts.get("--config-dir"), cwd, fairseq=True)


def check_torchrun(argv: list[str], cwd: Path) -> None:
    from torch.distributed.run import get_args_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            args = get_args_parser().parse_args(argv)
        except SystemExit:
            raise CheckError(err.getvalue().strip().splitlines()[-1]) from None
    program = Path(args.training_script).name
    checks = {"emotion2vec": check_cli, "fairseq-hydra-train": check_fairseq}
    if program not in checks:
        raise CheckError(f"torchrun launches {args.training_script!r}, not emotion2vec or fairseq-hydra-train")
    checks[program](list(args.training_script_args), cwd)


def _setup_extras() -> set[str]:
    text = (REPO / "setup.py").read_text()
    block = text[text.index("extras_require"):]
    return set(re.findall(r'"([\w-]+)":\s*\[', block[:block.index("}")]))


def _makefile_var(name: str) -> str:
    return re.search(rf"^{name} \?= (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)


def check_pip(argv: list[str], cwd: Path) -> None:
    for a in argv:
        if m := re.fullmatch(r"\.\[([\w,-]+)\]", a):
            missing = set(m.group(1).split(",")) - _setup_extras()
            if missing:
                raise CheckError(f"setup.py has no extra {sorted(missing)}")
        if a.startswith("torch==") and a != f"torch=={_makefile_var('TORCH_VERSION')}":
            raise CheckError(f"{a}: the Makefile pins torch=={_makefile_var('TORCH_VERSION')}")
        if a.startswith("fairseq-fixed==") and a != f"fairseq-fixed=={_makefile_var('FAIRSEQ_VERSION')}":
            raise CheckError(f"{a}: the Makefile pins fairseq-fixed=={_makefile_var('FAIRSEQ_VERSION')}")


def check_script(argv: list[str], cwd: Path) -> None:
    """``python benchmarks/X.py ...`` / ``docs/scripts/X.py``: the script exists and its ``--help`` lists every option
    the line passes."""
    script = REPO / argv[0]
    if not script.is_file():
        raise CheckError(f"no script {argv[0]}")
    res = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                         cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if res.returncode != 0:
        raise CheckError(f"{argv[0]} --help exited {res.returncode}: {res.stderr[-500:]}")
    known = set(re.findall(r"(--[\w-]+)", res.stdout))
    unknown = [a.split("=")[0] for a in argv[1:] if a.startswith("--") and a.split("=")[0] not in known]
    if unknown:
        raise CheckError(f"{argv[0]} does not take {', '.join(unknown)}")


def check_make(argv: list[str], cwd: Path) -> None:
    targets = set(re.findall(r"^([\w.-]+):", (REPO / "Makefile").read_text(), re.M))
    for t in argv:
        if not t.startswith("-") and "=" not in t and t not in targets:
            raise CheckError(f"the Makefile has no target {t!r}")


def _corpora() -> set[str]:
    return set(re.search(r'^CORPORA_ALL="([^"]+)"', (REPO / "recipes" / "common.sh").read_text(), re.M).group(1).split())


def _check_source(source: str) -> None:
    if source == "fbank" or re.fullmatch(r"(hf|text):\S+|opensmile:(eGeMAPSv02|ComParE_2016)(:lld)?", source):
        return
    if source.startswith(("hf", "text", "opensmile")) or not re.fullmatch(r"[\w./$-]+", source):
        raise CheckError(f"{source!r} is not a feature source (a checkpoint path, hf:..., opensmile:SET[:lld], fbank)")


def check_recipe(argv: list[str], cwd: Path) -> None:
    """A corpus recipe: its corpora, feature sources and the extra arguments it passes to each step."""
    split = argv.index("--env--")
    name, args = argv[0], argv[1:split]
    env = dict(a.split("=", 1) for a in argv[split + 1:])
    if name in ("run_all", "corpus"):
        corpora = env.get("CORPORA", "").split() if name == "run_all" else args[:1]
        if name == "run_all" and args:
            raise CheckError(f"recipes/run_all.sh takes no arguments (got {args})")
        unknown = sorted(set(c.replace("_", "-") for c in corpora) - _corpora())
        if unknown or (name == "corpus" and len(args) != 1):
            raise CheckError(f"unknown corpora {unknown or args} (recipes/common.sh knows {sorted(_corpora())})")
        for source in (env.get("CHECKPOINTS", "") + " " + env.get("CHECKPOINT", "")).split():
            _check_source(source)
        steps = {"PREPARE_ARGS": ["prepare", "urdu", "--root", "R"], "EXTRACT_ARGS": ["extract", "--checkpoint", "C",
                 "--input", "I", "--out", "O"], "PROBE_ARGS": ["probe", "--features", "F", "--data", "D", "--out", "O"]}
        for var, base in steps.items():
            if env.get(var):
                check_cli(base + shlex.split(env[var]), cwd)
        metrics = set(env.get("TABLE_METRICS", "wa").split(",")) - {"wa", "ua", "wf1", "macro_f1"}
        if metrics:
            raise CheckError(f"TABLE_METRICS: unknown {sorted(metrics)}")
    elif name == "pretrain_data":
        if args:
            raise CheckError(f"recipes/pretrain_data.sh takes no arguments (got {args})")
        for spec in env.get("EXCLUDE", "").split():
            check_cli(["manifest", "A", "--out", "M", "--exclude", spec], cwd)
        if not {"IEMOCAP", "MELD", "MEAD", "MOSEI", "MSP_PODCAST"} & set(env):
            raise CheckError("no corpus set (IEMOCAP, MELD, MEAD, MOSEI, MSP_PODCAST)")


def check_git(argv: list[str], cwd: Path) -> None:
    if argv[:1] != ["clone"] or len(argv) != 3 or not argv[1].startswith("https://"):
        raise CheckError("expected `git clone https://... DEST`")


# ------------------------------------------------------------------------------------------------ the tests
def _ignored_by_git(paths: list[str]) -> set[str]:
    """The paths git would ignore in the repository, as files or as folders (``features`` as ``features/``)."""
    if not paths:
        return set()
    asked = [q for p in paths for q in (p, p.rstrip("/") + "/")]
    res = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], input="\n".join(asked), cwd=REPO,
                         capture_output=True, text=True)
    ignored = set(res.stdout.split())
    return {p for p in paths if p in ignored or p.rstrip("/") + "/" in ignored}


def _copy_workspace(base: Path, dest: Path) -> Path:
    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(base, dest, symlinks=True, copy_function=link_or_copy)
    return dest


@pytest.mark.parametrize("page", [p for p in PAGES if p not in RUN_ELSEWHERE])
def test_page_runs_as_written(page, base_workspace, hub_models, tmp_path):
    ws = _copy_workspace(base_workspace, tmp_path / "ws")
    before = {p.name for p in ws.iterdir()}
    runner = Runner(ws, hub_models)
    timings = []
    for block in read_blocks(page):
        if block.lang not in ("bash", "python"):
            continue
        start = time.perf_counter()
        reason = listed_reason(block)
        if block.lang == "python":
            assert reason is None, f"{block}: python blocks are always run"
            runner.python(block)
        else:
            runner.bash(block, check_only=reason is not None)
        timings.append(f"{time.perf_counter() - start:6.1f} s  {block}{'  (checked)' if reason else ''}")
        runner.raise_failures()
    print(f"\n{page}:\n" + "\n".join(timings))
    made = sorted({p.name for p in ws.iterdir()} - before - {".venv"})
    leaked = sorted(set(made) - _ignored_by_git(made))
    assert not leaked, f"{page} creates {leaked} at the top of the repository, which git does not ignore"


def test_pages_run_elsewhere_have_their_test():
    for page, test in RUN_ELSEWHERE.items():
        path, name = test.split("::")
        assert page in PAGES, f"{page} is not a page"
        source = (REPO / path).read_text(encoding="utf-8")
        assert f"def {name}(" in source and page.split("/")[-1] in source, f"{test} does not run {page}"


def test_every_listed_block_exists_once():
    for (page, marker), reason in LISTED.items():
        hits = [b for b in read_blocks(page) if b.lang in ("bash", "python") and marker in b.code]
        assert len(hits) == 1, f"LISTED ({page!r}, {marker!r}) matches {len(hits)} blocks"
        assert reason.strip(), (page, marker)


def test_commands_live_in_bash_or_python_blocks():
    """A command in a block of another language would escape this test."""
    for page in PAGES:
        for block in read_blocks(page):
            if block.lang in ("bash", "python"):
                continue
            assert block.lang not in ("sh", "shell", "console", "zsh"), f"{block}: use ```bash"
            starts = [s for s in block.code.splitlines() if re.match(r"\s*(\$ )?(emotion2vec|python|pip|make) ", s)]
            assert not starts, f"{block}: a command in a ```{block.lang} block: {starts[0]!r}"


_OUTPUT_OPTIONS = ("--out", "--plot", "--resample-to", "--onnx", "--checksum-dir", "--json", "--curve")


def _output_paths(code: str) -> set[str]:
    """Paths the commands of a bash block write to: --out and similar options, checkpoint.save_dir=, OUT=,
    the destinations of convert and git clone."""
    code = re.sub(r"\\\n", " ", code)
    paths = set()
    for line in code.splitlines():
        line = line.split(" #")[0]
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        for i, w in enumerate(words):
            if w in _OUTPUT_OPTIONS and i + 1 < len(words):
                paths.add(words[i + 1])
            for prefix in ("checkpoint.save_dir=", "OUT=", "TABLE=", "+task.param_checksum_dir="):
                if w.startswith(prefix):
                    paths.add(w[len(prefix):])
        if words[:2] == ["emotion2vec", "convert"] and len(words) >= 4:
            paths.add(words[3])
        if words[:2] == ["git", "clone"] and len(words) >= 4:
            paths.add(words[3])
    return {p.rstrip("/") for p in paths if p and "$" not in p and p not in (".", "..")}


def test_what_the_docs_write_is_ignored_by_git():
    paths = sorted({p for page in PAGES for b in read_blocks(page) if b.lang == "bash" for p in _output_paths(b.code)})
    assert {"runs/urdu/plus_ft", "results_urdu_20ep", "checkpoints/e2v_plus_converted", "talk.jsonl",
            "outputs/tiny_urdu"} <= set(paths), paths  # the scan finds the docs' outputs
    missing = sorted(set(paths) - _ignored_by_git(paths))
    assert not missing, f"outputs the docs write that .gitignore does not cover: {missing}"


_TRACES = [
    (r"\.\./shared", "a path to the test material"),
    (r"(?<![\w.])/tmp/", "a temporary folder"),
    (r"(?<![\w.])/work/", "a path of a build machine"),
    (r"shared with other jobs|other jobs shared", "a remark about the machine"),
    (r"no GPU was available|no such CPU was available", "a remark about the machine"),
    (r"\bon this machine\b|\bmeasured here\b|\bthis repository's \d-core", "a remark about the machine"),
]


def test_docs_carry_no_trace_of_the_machine_they_were_written_on():
    found = []
    for page in PAGES:
        for n, line in enumerate((REPO / page).read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{page}:{n}: {why}: {line.strip()[:100]}" for pattern, why in _TRACES
                      if re.search(pattern, line, re.I)]
    assert not found, "\n".join(found)


def test_readme_is_a_front_page():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    for page in PAGES[1:]:
        assert f"({page})" in "\n".join(lines), f"README's documentation map does not link {page}"


def test_site_builds_in_strict_mode(tmp_path):
    """`make docs`: a broken link, a missing anchor or a page outside the navigation fails the build."""
    mkdocs = pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    assert mkdocs
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "evaluation" / "index.html").exists()
