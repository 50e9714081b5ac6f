"""Bad input never ends in an internal error (exit 3), a silent wrong result or a lost output.

Two parts:

* :data:`TABLE` -- command x bad input -> the exit status and the words the message must contain (and words it must
  not contain). Every case runs in this process through ``emotion2vec.cli.main`` on small fixtures built once, and
  leaves every file of those fixtures byte-identical.
* property-based cases (Hypothesis, derandomized): malformed data.tsv / folds.json / results.json / index.tsv
  generated from valid ones; every command that reads them exits 1 or 2 (never 3), names the file, and leaves the
  outputs of earlier runs byte-identical.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from emotion2vec.cli import main

from conftest import FIXTURES, require

LABELS = ("angry", "happy", "neutral", "sad")


# ================================================================================================ fixtures
def _wav(path: Path, samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples.astype("float32"), rate, subtype=subtype)
    return path


def _run(argv: list[str]) -> None:
    code = main(argv)
    assert code == 0, (argv, code)


def _utterance_features(folder: Path, vectors: dict[str, np.ndarray]) -> Path:
    """A per-file utterance-level feature folder as `emotion2vec extract` writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    dim = len(next(iter(vectors.values())))
    (folder / "features.json").write_text(json.dumps({
        "format": "emotion2vec-features", "version": 2, "granularity": "utterance", "layers": [-1], "dim": dim,
        "frame_rate": 50.0, "packed": False}))
    rows = ["key\tpath\tframes\tstatus\toutput\toffset"]
    for key, x in vectors.items():
        (folder / f"{key}.npy").parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{key}.npy", x.astype(np.float32))
        rows.append(f"{key}\t/audio/{key}.wav\t1\tok\t{key}.npy\t")
    (folder / "index.tsv").write_text("\n".join(rows) + "\n")
    return folder


def _dialogues(base: Path) -> tuple[Path, Path]:
    """A corpus of 12 dyadic dialogues (4 speakers) with dialog / start columns, its folds and utterance features."""
    rng = np.random.default_rng(1)
    means = rng.standard_normal((len(LABELS), 6)) * 2
    lines = ["key\tpath\tlabel\tspeaker\tgender\tduration\tdialog\tstart"]
    vectors, keys = {}, []
    for d in range(12):
        dialog = f"dlg{d:02d}"
        for turn in range(8):
            who = f"s{(d % 2) * 2 + turn % 2}"
            label = LABELS[(d + turn) % len(LABELS)]
            key = f"{dialog}/u{turn:02d}"
            lines.append(f"{key}\t/audio/{key}.wav\t{label}\t{who}\t{'MF'[turn % 2]}\t1.000\t{dialog}\t{turn * 1.5}")
            vectors[key] = means[LABELS.index(label)] + 0.3 * rng.standard_normal(6)
            keys.append(key)
    data = base / "conv_manifest"
    data.mkdir(parents=True)
    (data / "data.tsv").write_text("\n".join(lines) + "\n")
    folds = []
    for f in range(3):
        test = [k for k in keys if int(k[3:5]) % 3 == f]
        folds.append({"name": f"fold{f + 1}", "train": [k for k in keys if k not in test], "valid": [], "test": test})
    (data / "folds.json").write_text(json.dumps({"corpus": "dialogues", "protocol": "random-kfold", "seed": 0,
                                                 "speaker_independent": False, "labels": list(LABELS),
                                                 "folds": folds}))
    return data, _utterance_features(base / "conv_features", vectors)


@dataclass
class Fixtures:
    """Everything the cases read: paths by name (``{name}`` in a case's arguments)."""

    base: Path
    paths: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Path:
        return Path(self.paths[name])


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Fixtures:
    """A 32-clip corpus (4 labels x 4 speakers x 2, half a second each) prepared with 3 folds; its utterance features
    from the tiny golden checkpoint; two probe runs, a fine-tuning run of fold 1, a dialogue corpus and a
    conversation run, a report table and an ensemble; plus the bad files the cases give."""
    tiny = require(FIXTURES / "tiny_emotion2vec.pt", "golden checkpoint fixtures")
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("bad_inputs")
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    for li, label in enumerate(LABELS):
        for s in range(4):
            for i in range(2):
                _wav(base / "audio" / label / f"spk{s}_{label}_{i}.wav",
                     0.1 * np.sin(2 * np.pi * (150 + 60 * li + 10 * s) * t) + 0.01 * rng.standard_normal(8000))
    p = {"tiny": str(tiny), "evil": str(FIXTURES / "evil.pt"), "plus": str(FIXTURES / "funasr_emotion2vec_plus"),
         "audio": str(base / "audio"), "man": str(base / "manifest"), "feats": str(base / "features"),
         "run": str(base / "run"), "run2": str(base / "run_seed1"), "ft": str(base / "finetuned"),
         "wav": str(base / "audio" / "angry" / "spk0_angry_0.wav")}
    _run(["prepare", "folder", "--root", p["audio"], "--out", p["man"], "--speaker-regex", r"^(spk\d)_",
          "--protocol", "random-kfold", "--folds", "3", "--no-audio-audit", "--quiet"])
    _run(["extract", "--checkpoint", p["tiny"], "--input", f"{p['man']}/data.tsv", "--out", p["feats"],
          "--granularity", "utterance", "--num-workers", "0", "--quiet"])
    probe = ["probe", "--features", p["feats"], "--data", p["man"], "--epochs", "2", "--bootstrap", "0",
             "--no-audio-audit", "--quiet", "--device", "cpu"]
    _run([*probe, "--out", p["run"]])
    _run([*probe, "--out", p["run2"], "--seed", "1"])
    _run(["finetune", "--checkpoint", p["tiny"], "--data", p["man"], "--out", p["ft"], "--fold", "1",
          "--epochs", "1", "--max-seconds", "1", "--batch-seconds", "4", "--num-workers", "0", "--bootstrap", "0",
          "--no-audio-audit", "--precision", "fp32", "--quiet", "--no-tensorboard", "--device", "cpu"])
    conv_data, conv_feats = _dialogues(base)
    p.update(conv_man=str(conv_data), conv_feats=str(conv_feats), conv_run=str(base / "conversation"),
             ensemble=str(base / "ensemble"), table=str(base / "table.md"))
    _run(["conversation", "--features", p["conv_feats"], "--data", p["conv_man"], "--out", p["conv_run"],
          "--epochs", "1", "--hidden", "8", "--history", "2", "--bootstrap", "0", "--quiet", "--device", "cpu"])
    _run(["ensemble", p["run"], p["run2"], "--out", p["ensemble"], "--bootstrap", "0", "--quiet"])
    _run(["report", p["run"], p["run2"], "--out", p["table"]])
    # a pretraining manifest folder for `pretrain --print`
    (base / "pretrain_data").mkdir()
    (base / "pretrain_data" / "train.tsv").write_text(
        f"{p['audio']}\n" + "".join(f"{label}/spk0_{label}_0.wav\t8000\n" for label in LABELS))
    p["pretrain_data"] = str(base / "pretrain_data")
    _bad_files(base / "bad", p)
    yield Fixtures(base, p)


def _bad_files(bad: Path, p: dict[str, str]) -> None:
    """The bad files the table gives, written once (read-only use: the snapshot checks they stay as they are)."""
    bad.mkdir()
    (bad / "zero.pt").write_bytes(b"")
    (bad / "text.pt").write_text("this is a text file, not a checkpoint\n")
    (bad / "random.pt").write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (bad / "a_file").write_text("not a folder\n")
    (bad / "not_json.json").write_text("{ truncated")
    # NaN audio, a clip with a key that escapes the output folder
    _wav(bad / "nan_audio" / "nan.wav", np.full(8000, np.nan), subtype="FLOAT")
    _wav(bad / "nan_audio" / "fine.wav", 0.1 * np.ones(8000))
    rows = Path(p["man"], "data.tsv").read_text().splitlines()
    # data.tsv with a UTF-8 byte-order mark, and one whose key climbs out of the output folder
    (bad / "bom").mkdir()
    (bad / "bom" / "data.tsv").write_text("\ufeff" + "\n".join(rows) + "\n", encoding="utf-8")
    (bad / "bom_small.tsv").write_text("\ufeff" + "\n".join(rows[:3]) + "\n", encoding="utf-8")
    shutil.copy(Path(p["man"], "folds.json"), bad / "bom" / "folds.json")
    cells = rows[1].split("\t")
    (bad / "traversal.tsv").write_text(rows[0] + "\n" + "\t".join(["../../escaped", *cells[1:]]) + "\n")
    long_key = "k" * 300
    (bad / "long_key.tsv").write_text(rows[0] + "\n" + "\t".join([long_key, *cells[1:]]) + "\n")
    # broken feature folders: a missing .npy, a corrupt header, an object array, int64 features, NaN features
    for prefix, source, key in (("", p["feats"], "angry/spk0_angry_0"), ("conv_", p["conv_feats"], "dlg00/u00")):
        for name in ("missing_npy", "corrupt_npy", "object_npy", "int_npy", "nan_npy"):
            shutil.copytree(source, bad / f"{prefix}{name}")
            p[f"{prefix}{name}"] = str(bad / f"{prefix}{name}")
        x = np.load(Path(source, f"{key}.npy"))
        (bad / f"{prefix}missing_npy" / f"{key}.npy").unlink()
        (bad / f"{prefix}corrupt_npy" / f"{key}.npy").write_bytes(b"\x93NUMPY\x01\x00garbage header")
        np.save(bad / f"{prefix}object_npy" / f"{key}.npy", np.array([{"a": 1}, None], dtype=object),
                allow_pickle=True)
        np.save(bad / f"{prefix}int_npy" / f"{key}.npy", np.arange(x.shape[-1]))
        np.save(bad / f"{prefix}nan_npy" / f"{key}.npy", np.full_like(x, np.nan))
    # broken folds.json next to a good data.tsv
    for name, text in (("folds_truncated", '{"folds": [{"name": "fold1", "tra'), ("folds_empty", ""),
                       ("folds_list", "[1, 2, 3]"), ("folds_string", '"folds"')):
        (bad / name).mkdir()
        shutil.copy(Path(p["man"], "data.tsv"), bad / name / "data.tsv")
        (bad / name / "folds.json").write_text(text)
    # results.json of an unknown version / with folds that are not a list
    for name, change in (("results_v99", {"version": 99}), ("results_folds_x", {"folds": "x"})):
        shutil.copytree(p["run"], bad / name)
        result = json.loads(Path(p["run"], "results.json").read_text())
        (bad / name / "results.json").write_text(json.dumps({**result, **change}))
    # an ensemble member whose predictions hold nan
    shutil.copytree(p["run2"], bad / "nan_member")
    lines = Path(p["run2"], "predictions.tsv").read_text().splitlines()
    cells = lines[1].split("\t")
    cells[4] = "nan"
    (bad / "nan_member" / "predictions.tsv").write_text("\n".join([lines[0], "\t".join(cells), *lines[2:]]) + "\n")
    # broken pretraining configurations and manifests
    (bad / "configs").mkdir()
    (bad / "configs" / "broken.yaml").write_text("model:\n  _name: emotion2vec\n  depth: [1, 2\n")
    for name, text in (("pretrain_empty", ""), ("pretrain_corrupt", "\x00\x01garbage\tnot a number\n")):
        (bad / name).mkdir()
        (bad / name / "train.tsv").write_text(text)
    p.update({name: str(bad / name) for name in (
        "zero.pt", "text.pt", "random.pt", "a_file", "not_json.json", "nan_audio", "bom", "bom_small.tsv",
        "traversal.tsv", "long_key.tsv", "folds_truncated",
        "folds_empty", "folds_list", "folds_string", "results_v99", "results_folds_x", "nan_member", "configs",
        "pretrain_empty", "pretrain_corrupt")})
    p["bad"] = str(bad)


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-1 of every file under ``folder`` (and the set of names): what a refused command must leave alone."""
    return {str(f.relative_to(folder)): hashlib.sha1(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


# ================================================================================================ simulated faults
@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only. As root the permission bits do not stop writes, so then every open for writing,
    mkdir and temporary file under it fails as a read-only folder does (EACCES)."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    mode = folder.stat().st_mode
    os.chmod(folder, 0o555)
    patches = []
    if os.geteuid() == 0:
        def inside(path) -> bool:
            try:
                return Path(os.fspath(path)).resolve().is_relative_to(folder)
            except (TypeError, ValueError):
                return False

        def denied(path):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

        real_open, real_mkdir, real_builtin_open = os.open, os.mkdir, builtins.open

        def os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
                raise denied(path)
            return real_open(path, flags, *args, **kwargs)

        def mkdir(path, *args, **kwargs):
            if inside(path):
                raise denied(path)
            return real_mkdir(path, *args, **kwargs)

        def builtin_open(file, mode="r", *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and inside(file):
                raise denied(file)
            return real_builtin_open(file, mode, *args, **kwargs)

        patches = [(os, "open", os_open), (os, "mkdir", mkdir), (builtins, "open", builtin_open)]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, value in patches:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        os.chmod(folder, mode)


@contextlib.contextmanager
def disk_full():
    """Every fsync fails with ENOSPC, as on a full disk (atomic writes fsync before the rename)."""
    real = os.fsync

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.fsync = fsync
    try:
        yield
    finally:
        os.fsync = real


@contextlib.contextmanager
def interrupt_in(target: str):
    """A real SIGINT delivered while ``target`` (a dotted function name) runs, as a Ctrl-C in the middle of work."""
    import importlib
    import signal

    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    for part in parts[cut:-1]:
        owner = getattr(owner, part)
    module, name = owner, parts[-1]
    real = getattr(module, name)

    def interrupted(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    setattr(module, name, interrupted)
    try:
        yield
    finally:
        setattr(module, name, real)


# ================================================================================================ the table
@dataclass(frozen=True)
class Case:
    """``argv`` of ``emotion2vec`` -> exit ``code``, stderr holding every one of ``words`` and none of ``forbid``
    (case-insensitive). ``{name}`` in ``argv`` / ``words`` is a fixture path; ``{new}`` a path that does not exist
    yet, ``{file}`` an existing file, ``{dir}`` an existing empty folder, ``{dir.tsv}`` a folder named like a
    table, ``{ro}`` a read-only folder, ``{copy:NAME}`` a private copy of fixture NAME (which must stay unchanged
    when the command is refused). ``fault``: ``disk-full``, or ``sigint:module.function``."""

    command: str
    what: str
    argv: tuple[str, ...]
    code: int
    words: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    fault: str | None = None

    @property
    def id(self) -> str:
        return f"{self.command}: {self.what}"


def C(what: str, argv: str | list[str], code: int, words=(), forbid=(), fault=None) -> Case:
    argv = argv.split() if isinstance(argv, str) else argv
    return Case(argv[0], what, tuple(argv), code, tuple(words), tuple(forbid), fault)


NOT_CHECKPOINT = ("internal error", "--trust-checkpoint", "IndexError")
ALWAYS_FORBIDDEN = ("internal error", "Traceback")
PROBE = "probe --features {feats} --data {man} --epochs 1 --bootstrap 0 --no-audio-audit --quiet --device cpu"
PROBE_OUT = PROBE + " --out {new}"
CONV = ("conversation --features {conv_feats} --data {conv_man} --epochs 1 --hidden 8 --history 2 --bootstrap 0 "
        "--quiet --device cpu")
FT = ("finetune --checkpoint {tiny} --data {man} --epochs 1 --max-seconds 1 --batch-seconds 4 --num-workers 0 "
      "--bootstrap 0 --no-audio-audit --precision fp32 --quiet --no-tensorboard --device cpu")
EXTRACT = "extract --checkpoint {tiny} --input {wav} --num-workers 0 --quiet"
PREDICT = "predict {plus} {wav} --num-workers 0 --quiet"
ROBUST = "robustness {run} --data {man} --folds 1 --perturbations gain --quiet"
PRETRAIN = "pretrain emotion2vec_tiny_cpu --print task.data={pretrain_data}"
ENSEMBLE = "ensemble {run} {run2} --bootstrap 0 --quiet"
DIR_OUTPUTS = {  # every command that writes a folder: the command line up to its output folder
    "prepare": "prepare folder --root {audio} --no-audio-audit --quiet --out",
    "manifest": "manifest {audio} --out",
    "extract": EXTRACT + " --out",
    "probe": PROBE + " --folds 1 --out",
    "conversation": CONV + " --folds 1 --out",
    "finetune": FT + " --fold 1 --out",
    "robustness": ROBUST + " --out",
    "ensemble": ENSEMBLE + " --out",
    "convert": "convert {tiny}",
    "demo": "demo --fast --out",
    "synth": "synth --speakers 1 --per-emotion 1 --emotions angry",
    "evaluate": "evaluate {plus} --data {man} --bootstrap 0 --num-workers 0 --only-corpus-classes --quiet --out",
    "pseudo-label": "pseudo-label {plus} --input {wav} --num-workers 0 --quiet --out",
    "linguistics": "linguistics {ft}/models/fold1 --quiet --out",
}
FILE_OUTPUTS = {  # every command that writes a file: the command line up to it (its extension added)
    "predict": (PREDICT + " --out", ".tsv"),
    "audit": ("audit {man} --no-audio --json", ".json"),
    "report": ("report {run} --out", ".md"),
    "export": ("export {tiny} --onnx", ".onnx"),
}

TABLE: list[Case] = []
# ------------------------------------------------------------------------------------------------ outputs lost
TABLE += [
    C("--out is one of the runs", ENSEMBLE.replace("{run}", "{copy:run}") + " --out {copy:run}", 2,
      ["{copy:run}", "one of the runs"]),
    C("--out is a run given by its results.json", "ensemble {copy:run}/results.json {run2} --out {copy:run}", 2,
      ["{copy:run}", "one of the runs"]),
]
# ------------------------------------------------------------------------------------------------ outputs
for command, line in DIR_OUTPUTS.items():
    TABLE += [
        C("output folder is a file", f"{line} {{file}}", 2, ["{file}", "a file, not a folder"]),
        C("output folder is read-only", f"{line} {{ro}}/out", 2, ["cannot write", "{ro}", "permission denied"]),
        C("output inside a file", f"{line} {{file}}/out", 2, ["cannot write", "{file}", "not a folder"]),
    ]
for command, (line, ext) in FILE_OUTPUTS.items():
    TABLE += [
        C("output file is a folder", f"{line} {{dir{ext}}}", 2, [f"{{dir{ext}}}", "a folder, not a file"]),
        C("output file in a read-only folder", f"{line} {{ro}}/out{ext}", 2,
          ["cannot write", "{ro}", "permission denied"]),
        C("output inside a file", f"{line} {{file}}/out{ext}", 2, ["cannot write", "{file}", "not a folder"]),
    ]
TABLE += [
    C("--resample-to is a file", "manifest {audio} --out {new} --resample-to {file}", 2,
      ["--resample-to", "{file}", "a file, not a folder"]),
    C("--plot is a file", PREDICT + " --window 0.25 --plot {file}", 2, ["--plot", "{file}", "a file, not a folder"]),
    C("--checksum-dir is a file", FT + " --fold 1 --out {new} --checksum-dir {file}", 2,
      ["--checksum-dir", "{file}", "a file, not a folder"]),
    C("a key longer than a file name may be", "extract --checkpoint {tiny} --input {long_key.tsv} --out {new}", 2,
      ["{long_key.tsv}", "too long"]),
]
for what, line in (("prepare", DIR_OUTPUTS["prepare"] + " {new}"), ("manifest", "manifest {audio} --out {new}"),
                   ("synth", DIR_OUTPUTS["synth"] + " {new}"), ("audit", "audit {man} --no-audio --json {new}.json"),
                   ("report", "report {run} --out {new}.md"), ("ensemble", ENSEMBLE + " --out {new}"),
                   ("convert", "convert {tiny} {new}"), ("probe", PROBE + " --folds 1 --out {new}"),
                   ("conversation", CONV + " --folds 1 --out {new}"), ("predict", PREDICT + " --out {new}.tsv"),
                   ("extract", EXTRACT + " --out {new}"), ("robustness", ROBUST + " --out {new}"),
                   ("finetune", FT + " --fold 1 --out {new}"), ("export", "export {tiny} --onnx {new}.onnx")):
    TABLE.append(C("disk full", line, 2, ["cannot write", "{new}", "no space left"], fault="disk-full"))
# ------------------------------------------------------------------------------------------------ checkpoints
CHECKPOINT_LINES = {
    "extract": "extract --checkpoint {ckpt} --input {wav} --out {new} --num-workers 0 --quiet",
    "predict": "predict {ckpt} {wav} --num-workers 0 --quiet",
    "finetune": FT.replace("{tiny}", "{ckpt}") + " --fold 1 --out {new}",
    "convert": "convert {ckpt} {new}",
    "export": "export {ckpt} --onnx {new}.onnx",
    "robustness": ROBUST + " --out {new} --checkpoint {ckpt}",
}
for command, line in CHECKPOINT_LINES.items():
    for bad, what in (("zero.pt", "a zero-byte checkpoint"), ("text.pt", "a text file as checkpoint"),
                      ("random.pt", "random bytes as checkpoint")):
        TABLE.append(C(what, line.replace("{ckpt}", f"{{{bad}}}"), 2, [f"{{{bad}}}", "not a checkpoint"],
                       NOT_CHECKPOINT))
    TABLE.append(C("a pickle that runs code", line.replace("{ckpt}", "{evil}"), 2,
                   ["{evil}", "refused to unpickle", "--trust-checkpoint"]))
# ------------------------------------------------------------------------------------------------ feature folders
FEATURE_KEY = {"probe": ("angry/spk0_angry_0", PROBE_OUT, "{feats}"),
               "conversation": ("dlg00/u00", CONV + " --out {new}", "{conv_feats}")}
for command, (key, line, folder) in FEATURE_KEY.items():
    prefix = "" if command == "probe" else "conv_"
    for bad, what, words in (
            ("missing_npy", "index.tsv lists a missing .npy", ["no such file"]),
            ("corrupt_npy", "a corrupt .npy header", ["not a .npy"]),
            ("object_npy", "an object array", ["object"]),
            ("int_npy", "an int64 array", ["int64", "float"]),
            ("nan_npy", "NaN features", ["nan"])):
        TABLE.append(C(what, line.replace(folder, f"{{{prefix}{bad}}}"), 2,
                       [key, f"{{{prefix}{bad}}}/{key}.npy" if bad != "nan_npy" else f"{{{prefix}{bad}}}", *words]))
    TABLE += [
        C("--features is a file", line.replace(folder, "{a_file}"), 2, ["{a_file}", "not a folder"]),
        C("--features is missing", line.replace(folder, "{new}"), 2, ["{new}"]),
        C("--concat-features is a file", line + " --concat-features {a_file}", 2, ["{a_file}", "not a folder"]),
    ]
TABLE += [
    C("a run given as a plain file", "report {a_file}", 2, ["{a_file}"]),
    C("results.json that is not JSON", "report {not_json.json}", 2, ["{not_json.json}", "invalid JSON"]),
]
# ------------------------------------------------------------------------------------------------ folds.json
for bad, what in (("folds_truncated", "a truncated folds.json"), ("folds_empty", "an empty folds.json"),
                  ("folds_list", "folds.json holding a list"), ("folds_string", "folds.json holding a string")):
    TABLE += [C(what, f"audit {{{bad}}} --no-audio", 2, [f"{{{bad}}}/folds.json"]),
              C(what, PROBE.replace("{man}", f"{{{bad}}}") + " --out {new}", 2, [f"{{{bad}}}/folds.json"]),
              C(what, FT.replace("{man}", f"{{{bad}}}") + " --out {new}", 2, [f"{{{bad}}}/folds.json"])]
# ------------------------------------------------------------------------------------------------ option values
NUMBER_OPTIONS = [  # (command line, option, bad values)
    (PROBE_OUT, "--lr", ("-1", "0", "nan", "inf")),
    (PROBE_OUT, "--momentum", ("-0.1", "1.5", "nan")),
    (PROBE_OUT, "--weight-decay", ("-1", "nan")),
    (PROBE_OUT, "--epochs", ("0", "-3")),
    (PROBE_OUT, "--batch-size", ("0",)),
    (PROBE_OUT, "--hidden", ("0",)),
    (PROBE_OUT, "--dropout", ("1.5", "-0.1")),
    (PROBE_OUT, "--valid-fraction", ("1", "-0.2")),
    (PROBE_OUT, "--label-smoothing", ("1", "-0.1")),
    (PROBE_OUT, "--cb-beta", ("1", "-0.5")),
    (PROBE_OUT, "--bootstrap", ("-1",)),
    (PROBE_OUT, "--patience", ("0",)),
    (PROBE_OUT, "--threads", ("0",)),
    (PROBE_OUT, "--arcface-scale", ("0",)),
    (PROBE_OUT, "--speaker-min-utterances", ("0",)),
    (FT + " --out {new}", "--lr", ("0", "-1e-4", "nan")),
    (FT + " --out {new}", "--head-lr", ("0",)),
    (FT + " --out {new}", "--weight-decay", ("-0.01",)),
    (FT + " --out {new}", "--num-workers", ("-1",)),
    (FT + " --out {new}", "--batch-seconds", ("0.1", "0", "nan")),
    (FT + " --out {new}", "--epochs", ("0",)),
    (FT + " --out {new}", "--accumulate", ("0",)),
    (FT + " --out {new}", "--layer-decay", ("0", "1.5")),
    (FT + " --out {new}", "--warmup", ("-1",)),
    (FT + " --out {new}", "--max-seconds", ("-1",)),
    (FT + " --out {new}", "--clip-norm", ("-1",)),
    (CONV + " --out {new}", "--lr", ("nan", "0")),
    (CONV + " --out {new}", "--weight-decay", ("-1",)),
    (CONV + " --out {new}", "--history", ("0",)),
    (EXTRACT + " --out {new}", "--num-workers", ("-1",)),
    (EXTRACT + " --out {new}", "--max-tokens", ("1", "0")),
    (EXTRACT + " --out {new}", "--chunk-seconds", ("0", "-5")),
    (PREDICT, "--num-workers", ("-2",)),
    (PREDICT, "--max-tokens", ("1",)),
    (PREDICT, "--window", ("0", "-1")),
    (ROBUST + " --out {new}", "--num-workers", ("-1",)),
    (ROBUST + " --out {new}", "--max-tokens", ("1",)),
    (ROBUST + " --out {new}", "--threshold", ("-1",)),
    (ROBUST + " --out {new}", "--save-audio", ("-1",)),
    ("manifest {audio} --out {new}", "--num-workers", ("-1",)),
    ("manifest {audio} --out {new}", "--valid-fraction", ("1", "-0.1")),
    ("manifest {audio} --out {new}", "--min-seconds", ("-1",)),
    (ENSEMBLE + " --out {new}", "--bootstrap", ("-5",)),
    ("synth {new}", "--speakers", ("0",)),
    ("synth {new}", "--per-emotion", ("-1",)),
    ("synth {new}", "--workers", ("0",)),
    ("prepare folder --root {audio} --out {new} --quiet", "--folds", ("1",)),
    ("prepare folder --root {audio} --out {new} --quiet", "--valid-fraction", ("1.5",)),
]
for line, option, values in NUMBER_OPTIONS:
    for value in values:
        TABLE.append(C(f"{option} {value}", f"{line} {option}={value}".split(), 2, [option, value]))
TABLE += [
    C("--device foo", EXTRACT + " --out {new} --device foo", 2, ["--device", "foo"]),
    C("--device foo", PREDICT + " --device foo", 2, ["--device", "foo"]),
    C("--device foo", PROBE_OUT + " --device foo", 2, ["--device", "foo"]),
    C("--device foo", FT + " --out {new} --device foo", 2, ["--device", "foo"]),
    C("--device foo", CONV + " --out {new} --device foo", 2, ["--device", "foo"]),
    C("--device foo", ROBUST + " --out {new} --device foo", 2, ["--device", "foo"]),
    C("--device cuda:x", PROBE_OUT + " --device cuda:x", 2, ["--device", "cuda:x"]),
    C("--layers 1,1", EXTRACT + " --out {new} --layers 1,1", 2, ["--layers", "1,1", "twice"]),
    C("--layers 1,1", "export {tiny} --onnx {new}.onnx --layers 1,1", 2, ["--layers", "1,1", "twice"]),
    C("--layer 0,0", PROBE_OUT + " --layer 0,0", 2, ["--layer", "0,0", "twice"]),
    C("--folds fold1,fold1", PROBE_OUT + " --folds fold1,fold1", 2, ["--folds", "fold1", "twice"]),
    C("--folds 1,fold1", PROBE_OUT + " --folds 1,fold1", 2, ["--folds", "fold1", "twice"]),
    C("--folds fold1,fold1", CONV + " --out {new} --folds fold1,fold1", 2, ["--folds", "fold1", "twice"]),
    C("--folds fold1,fold1", ROBUST.replace("--folds 1", "--folds fold1,fold1") + " --out {new}", 2,
      ["--folds", "fold1", "twice"]),
    C("--fold fold1,fold1", FT + " --out {new} --fold fold1,fold1", 2, ["--fold", "fold1", "twice"]),
    C("--freeze all-but-top -1", FT + " --out {new} --freeze all-but-top -1", 2, ["all-but-top", "-1"]),
    C("--preset nosuch", EXTRACT + " --out {new} --preset nosuch", 2, ["--preset", "nosuch"]),
    C("--preset nosuch", "convert {tiny} {new} --preset nosuch", 2, ["--preset", "nosuch"]),
    C("--preset nosuch", "export {tiny} --onnx {new}.onnx --preset nosuch", 2, ["--preset", "nosuch"]),
    C("--emotions ''", ["synth", "{new}", "--emotions", ""], 2, ["--emotions"]),
    C("--emotions ' , '", ["synth", "{new}", "--emotions", " , "], 2, ["--emotions"]),
    C("--emotions angry,angry", "synth {new} --emotions angry,angry", 2, ["--emotions", "angry", "twice"]),
    C("--emotions nosuch", "synth {new} --emotions nosuch", 2, ["--emotions", "nosuch"]),
    C("--corpora nosuch", "report {run} --corpora nosuch", 2, ["--corpora", "nosuch"]),
    C("--sources nosuch", "report {run} --sources nosuch", 2, ["--sources", "nosuch"]),
    C("--metrics nosuch", "report {run} --metrics nosuch", 2, ["--metrics", "nosuch"]),
    C("--text-pooling on audio features", EXTRACT + " --out {new} --text-pooling cls", 2,
      ["--text-pooling", "text:"]),
    C("--search 0", ENSEMBLE + " --out {new} --search 0", 2, ["--search", "0"]),
    C("--targets a,a", PROBE_OUT + " --task regression --targets duration,duration", 2, ["--targets", "twice"]),
    C("--targets a,a", FT + " --out {new} --task regression --targets duration,duration", 2, ["--targets", "twice"]),
    C("--seeds 1,1", PROBE_OUT + " --seeds 1,1", 2, ["--seeds", "twice"]),
    C("--train-fraction 0.5,0.5", PROBE_OUT + " --train-fraction 0.5,0.5", 2, ["--train-fraction", "twice"]),
    C("--group-by gender,gender", PROBE_OUT + " --group-by gender,gender", 2, ["--group-by", "twice"]),
    C("--concat-features the --features folder", PROBE_OUT + " --concat-features {feats}", 2,
      ["--concat-features", "{feats}", "twice"]),
    C("--classes angry,angry", CONV + " --out {new} --classes angry,angry", 2, ["--classes", "twice"]),
    C("--group-by gender,gender", ENSEMBLE + " --out {new} --group-by gender,gender", 2, ["--group-by", "twice"]),
    C("--group-by gender,gender", FT + " --out {new} --group-by gender,gender", 2, ["--group-by", "twice"]),
    C("--group-by gender,gender", "evaluate {plus} --data {man} --out {new} --group-by gender,gender", 2,
      ["--group-by", "twice"]),
    C("--targets a,a", "evaluate {plus} --data {man} --out {new} --targets duration,duration", 2,
      ["--targets", "twice"]),
    C("--perturbations gain,gain", ROBUST.replace("gain", "gain,gain") + " --out {new}", 2,
      ["--perturbations", "twice"]),
]
# ------------------------------------------------------------------------------------------------ pretrain
TABLE += [
    C("a broken YAML config", "pretrain broken --config-dir {configs} --print task.data={pretrain_data}", 2,
      ["{configs}/broken.yaml"]),
    C("optimization.lr=abc", PRETRAIN + " optimization.lr=abc", 2, ["optimization.lr", "abc"]),
    C("model.init_from a missing file", "pretrain emotion2vec_tiny_cpu task.data={pretrain_data} "
      "model.init_from={new}.pt", 2, ["model.init_from", "{new}.pt", "no such file"]),
    C("model.init_from a missing file, --print: a note", PRETRAIN + " model.init_from={new}.pt", 0,
      ["note: on this machine: model.init_from", "{new}.pt"]),
    C("optimization.lr=[-1]", PRETRAIN + " optimization.lr=[-1]", 2, ["optimization.lr", "-1", "> 0"]),
    C("optimization.max_epoch=-1", PRETRAIN + " optimization.max_epoch=-1", 2, ["optimization.max_epoch", "-1"]),
    C("dataset.max_tokens=1", PRETRAIN + " dataset.max_tokens=1", 2, ["dataset.max_tokens"]),
    C("an empty train.tsv", "pretrain emotion2vec_tiny_cpu --print task.data={pretrain_empty}", 2,
      ["{pretrain_empty}/train.tsv"]),
    C("a corrupt train.tsv", "pretrain emotion2vec_tiny_cpu --print task.data={pretrain_corrupt}", 2,
      ["{pretrain_corrupt}/train.tsv"]),
    C("a negative max_update", PRETRAIN + " optimization.max_update=-5", 2, ["optimization.max_update", "-5"],
      ["set e.g. lr_scheduler.warmup_updates=0"]),
    C("an unknown option after the overrides", PRETRAIN + " --bogus", 2, ["--bogus"]),
    C("options after the overrides", "pretrain emotion2vec_tiny_cpu task.data={pretrain_data} --print "
      "optimization.max_update=3", 0),
]
# ------------------------------------------------------------------------------------------------ unclear refusals
TABLE += [
    C("data.tsv with a byte-order mark", "extract --checkpoint {tiny} --input {bom_small.tsv} --out {new} "
      "--num-workers 0 --quiet", 0),
    C("data.tsv with a byte-order mark", "predict {plus} {bom_small.tsv} --num-workers 0 --quiet", 0),
    C("data.tsv with a byte-order mark", "audit {bom} --no-audio", 0),
    C("data.tsv with a byte-order mark", PROBE.replace("{man}", "{bom}") + " --folds 1 --out {new}", 0),
    C("data.tsv with a byte-order mark", FT.replace("{man}", "{bom}") + " --fold 1 --out {new} --epochs 1", 0),
    C("a resume with other folds", FT + " --fold 2 --out {copy:ft}", 2, ["fold1", "fold2"]),
    C("a conversation run", ROBUST.replace("{run}", "{conv_run}") + " --out {new}", 2,
      ["{conv_run}", "conversation"], ["re-run `emotion2vec probe`"]),
    C("a fine-tuning run (its exported models re-run)", ROBUST.replace("{run}", "{ft}") + " --out {new}", 0),
    C("results.json of version 99", "report {results_v99}", 2, ["{results_v99}/results.json", "version 99"]),
    C("results.json whose folds are a string", "report {results_folds_x}", 2,
      ["{results_folds_x}/results.json", "folds"]),
    C("results.json of version 99", ENSEMBLE.replace("{run2}", "{results_v99}") + " --out {new}", 2,
      ["{results_v99}/results.json", "version 99"]),
    C("a member's predictions hold nan", "ensemble {run} {nan_member} --bootstrap 0 --quiet --out {new}", 2,
      ["{nan_member}/predictions.tsv", "nan"]),
    C("--out inside the input folder", "extract --checkpoint {tiny} --input {audio} --out {audio}/features", 2,
      ["--out", "{audio}"]),
    C("--out among the recordings of data.tsv", "extract --checkpoint {tiny} --input {man}/data.tsv --out {audio}",
      2, ["--out", "{audio}"]),
]
# ------------------------------------------------------------------------------------------------ held up before
TABLE += [
    C("a key that climbs out of the output folder", "extract --checkpoint {tiny} --input {traversal.tsv} --out {new}",
      2, ["{traversal.tsv}", ".."]),
    C("NaN audio", "extract --checkpoint {tiny} --input {nan_audio} --out {new} --num-workers 0 --quiet", 1,
      ["nan.wav"]),
    C("NaN audio", "predict {plus} {nan_audio} --num-workers 0 --quiet", 1, ["nan.wav"]),
    C("a missing input", "extract --checkpoint {tiny} --input {new}.wav --out {new}", 2, ["{new}.wav"]),
    C("Ctrl-C", PROBE_OUT + " --folds 1", 130, ["interrupted"], fault="sigint:emotion2vec.downstream.probe.train_fold"),
    C("Ctrl-C", EXTRACT + " --out {new}", 130, ["interrupted"],
      fault="sigint:emotion2vec.extract.engine.BatchedForward.__call__"),
]


# ================================================================================================ running a case
def stat_snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime, inode) of every file under ``folder``: a rewrite, a replace or a deletion changes it."""
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            st = f.stat()
            out[str(f.relative_to(folder))] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


class Resolver:
    """``{name}`` placeholders of one case -> paths (fixtures, and the case's own scratch files)."""

    def __init__(self, fx: Fixtures, scratch: Path):
        self.fx, self.scratch, self.copies = fx, scratch, {}
        self.read_only: Path | None = None

    def path(self, name: str) -> str:
        s = self.scratch
        if name == "new":
            return str(s / "new")
        if name == "file":
            (s / "existing_file").write_text("keep me\n") if not (s / "existing_file").exists() else None
            return str(s / "existing_file")
        if name.startswith("dir"):
            folder = s / ("existing_dir" + name[3:])
            folder.mkdir(exist_ok=True)
            return str(folder)
        if name == "ro":
            self.read_only = s / "read_only"
            self.read_only.mkdir(exist_ok=True)
            return str(self.read_only)
        if name.startswith("copy:"):
            source = name[5:]
            if source not in self.copies:
                target = s / f"copy_of_{source}"
                shutil.copytree(self.fx[source], target, symlinks=True)
                self.copies[source] = target
            return str(self.copies[source])
        return self.fx.paths[name]

    def __call__(self, text: str) -> str:
        import re

        return re.sub(r"\{([^{}]+)\}", lambda m: self.path(m.group(1)), text)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """``emotion2vec ARGV`` in this process -> (exit status, stderr)."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code if isinstance(e.code, int) else 2
    captured = capsys.readouterr()
    return code, captured.err


def _fault(case: Case, resolve: Resolver):
    if case.fault == "disk-full":
        return disk_full()
    if case.fault and case.fault.startswith("sigint:"):
        return interrupt_in(case.fault[len("sigint:"):])
    if resolve.read_only is not None:
        return read_only(resolve.read_only)
    return contextlib.nullcontext()


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_table(case: Case, fx: Fixtures, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("E2V_PICKLE_EXECUTED", raising=False)
    resolve = Resolver(fx, tmp_path)
    argv = [resolve(a) for a in case.argv]
    words = [resolve(w) for w in case.words]
    copies_before = {name: snapshot(path) for name, path in resolve.copies.items()}
    scratch_before = {p.name: snapshot(p) if p.is_dir() else p.read_bytes() for p in tmp_path.iterdir()
                      if not p.name.startswith("copy_of_")}
    fixtures_before = stat_snapshot(fx.base)
    with _fault(case, resolve):
        code, err = run_cli(argv, capsys)
    shown = f"\n$ emotion2vec {' '.join(argv)}\n-> exit {code}\n{err[-3000:]}"
    assert code == case.code, shown
    low = err.lower()
    missing = [w for w in words if w.lower() not in low]
    assert not missing, f"message lacks {missing}:{shown}"
    present = [w for w in (*case.forbid, *ALWAYS_FORBIDDEN) if w.lower() in low]
    assert not present, f"message holds {present}:{shown}"
    assert "E2V_PICKLE_EXECUTED" not in os.environ, "the checkpoint ran code"
    assert stat_snapshot(fx.base) == fixtures_before, f"a fixture changed:{shown}"
    if code != 0:  # a refused command leaves what was there as it was
        for name, before in copies_before.items():
            assert snapshot(resolve.copies[name]) == before, f"{name} changed:{shown}"
        for p in tmp_path.iterdir():
            if p.name in scratch_before:
                now = snapshot(p) if p.is_dir() else p.read_bytes()
                assert now == scratch_before[p.name], f"{p} changed:{shown}"


# ================================================================================================ one run per folder
def test_a_probe_run_replaces_the_earlier_run_in_its_folder(fx: Fixtures, tmp_path: Path, capsys):
    """A probe of fold 1 into a folder holding a 3-fold run leaves no head of folds 2 and 3 behind, so fine-tuning
    cannot start from a head of a run that no longer exists."""
    run = tmp_path / "run"
    shutil.copytree(fx["run"], run)
    assert sorted(p.name for p in (run / "heads").iterdir()) == ["fold1.pt", "fold2.pt", "fold3.pt"]
    code, err = run_cli([*PROBE.format(**fx.paths).split(), "--folds", "1", "--out", str(run)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (run / "heads").iterdir()) == ["fold1.pt"]
    assert [f["name"] for f in json.loads((run / "results.json").read_text())["folds"]] == ["fold1"]
    code, err = run_cli([*FT.format(**fx.paths).split(), "--fold", "2", "--head-from", str(run), "--out",
                         str(tmp_path / "ft")], capsys)
    assert code == 2 and f"no head for fold fold2 ({run / 'heads' / 'fold2.pt'})" in err, err


# ================================================================================================ generated inputs
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

GENERATED = settings(max_examples=int(os.environ.get("E2V_GENERATED_EXAMPLES", 40)), deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.data_too_large])
#: one line of text without the characters that would change a file's rows or cells
CELL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r\x0b\x0c\x1c\x1d\x1e\x85"
                                                                                  "\u2028\u2029"),
               min_size=1, max_size=12)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10, 10 ** 6) | st.floats(allow_nan=False) | CELL,
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(CELL, children, max_size=3),
                    max_leaves=8)


def quiet_cli(argv: list[str]) -> tuple[int, str]:
    """``emotion2vec ARGV`` in this process, its printing captured -> (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return code, err.getvalue()


@pytest.fixture(scope="module")
def earlier(fx: Fixtures, tmp_path_factory) -> dict[str, Path]:
    """Outputs of earlier runs that the refused commands are pointed at: they must stay byte-identical."""
    base = tmp_path_factory.mktemp("earlier")
    out = {name: base / name for name in ("run", "ensemble", "feats", "ft")}
    for name, path in out.items():
        shutil.copytree(fx[name], path)
    out["table"] = base / "table.md"
    shutil.copy(fx["table"], out["table"])
    return out


def refused(argv: list[str], names: str | Path, earlier: dict[str, Path]) -> str:
    """Run a command on a malformed file: exit 1 or 2 (never 3, never 0), the message names ``names``, and the
    outputs of earlier runs are byte-identical afterwards. -> the message."""
    before = {name: snapshot(p) if p.is_dir() else p.read_bytes() for name, p in earlier.items()}
    code, err = quiet_cli(argv)
    shown = f"$ emotion2vec {' '.join(map(str, argv))}\n-> exit {code}\n{err[-2000:]}"
    assert code in (1, 2), shown
    assert str(names) in err, f"the message does not name {names}:\n{shown}"
    after = {name: snapshot(p) if p.is_dir() else p.read_bytes() for name, p in earlier.items()}
    assert after == before, f"an earlier output changed:\n{shown}"
    return err


@contextlib.contextmanager
def corpus_copy(fx: Fixtures):
    """A private copy of the prepared corpus (data.tsv, folds.json) to break."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="corpus_", dir=fx.base))
    for name in ("data.tsv", "folds.json"):
        shutil.copy(fx["man"] / name, folder / name)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _not_a_duration(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return True
    return not (value >= 0 and value != float("inf"))


@st.composite
def broken_data_tsv(draw, text: str) -> bytes:
    """A data.tsv broken in one of the ways a hand-edited or foreign file is: the header, a row's cells, a key,
    a duration, a duplicate, a truncation, bytes that are not UTF-8."""
    lines = text.rstrip("\n").split("\n")
    header = lines[0].split("\t")
    row = draw(st.integers(1, len(lines) - 1))
    cells = lines[row].split("\t")
    kind = draw(st.sampled_from(["header", "cells", "key", "duration", "duplicate", "truncated", "bytes", "gender",
                                 "empty"]))
    if kind == "header":
        col = draw(st.integers(0, 5))
        name = draw(CELL.filter(lambda t: t != header[col]))
        header[col] = name if draw(st.booleans()) else ""
        lines[0] = "\t".join(h for h in header if h or not draw(st.booleans()))
    elif kind == "cells":
        extra = draw(st.lists(CELL, min_size=1, max_size=2))
        lines[row] = "\t".join(cells[:-1] if draw(st.booleans()) else cells + extra)
    elif kind == "key":
        cells[0] = draw(st.sampled_from(["", " padded", "/absolute/key", "a/../b", "a//b", "back\\slash", "k" * 300,
                                         "nul\x00key", "bell\x07"]))
        lines[row] = "\t".join(cells)
    elif kind == "duration":
        cells[5] = draw(st.sampled_from(["", "abc", "-1", "nan", "inf", "1e999"]) | CELL.filter(_not_a_duration))
        lines[row] = "\t".join(cells)
    elif kind == "duplicate":
        other = draw(st.integers(1, len(lines) - 1).filter(lambda i: i != row))
        lines[other] = "\t".join([cells[0], *lines[other].split("\t")[1:]])
    elif kind == "gender":
        cells[4] = draw(CELL.filter(lambda t: t not in ("M", "F")))
        lines[row] = "\t".join(cells)
    elif kind == "empty":
        cells[draw(st.sampled_from([1, 2]))] = ""
        lines[row] = "\t".join(cells)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if kind == "truncated":
        data = data[:draw(st.integers(0, len(lines[0]) - 1))]
    elif kind == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\x80abc", b"\xed\xa0\x80"])) + data[at:]
    return data


@GENERATED
@given(data=st.data())
def test_generated_data_tsv_is_refused_naming_it(fx: Fixtures, earlier, data):
    broken = data.draw(broken_data_tsv(Path(fx["man"], "data.tsv").read_text()))
    with corpus_copy(fx) as corpus:
        (corpus / "data.tsv").write_bytes(broken)
        refused(["audit", corpus, "--no-audio"], corpus / "data.tsv", earlier)
        refused(["probe", "--features", fx["feats"], "--data", corpus, "--out", earlier["run"], "--epochs", "1",
                 "--bootstrap", "0", "--no-audio-audit", "--quiet", "--device", "cpu"], corpus / "data.tsv", earlier)
        refused(["extract", "--checkpoint", "fbank", "--input", corpus / "data.tsv", "--out", earlier["feats"],
                 "--num-workers", "0", "--quiet"], corpus / "data.tsv", earlier)


@st.composite
def broken_folds_json(draw, text: str) -> bytes:
    """folds.json truncated, replaced by other JSON, or with one part of the wrong kind or inconsistent with
    data.tsv (a key it does not have, a key in two splits, a fold named twice, an empty test set)."""
    kind = draw(st.sampled_from(["truncated", "json", "field", "unknown key", "overlap", "twice", "no test"]))
    if kind == "truncated":
        return text.encode()[:draw(st.integers(0, text.rindex("}") - 1))]
    if kind == "json":
        return json.dumps(draw(JSON.filter(lambda v: not (isinstance(v, dict) and "folds" in v)))).encode()
    spec = json.loads(text)
    fold = spec["folds"][draw(st.integers(0, len(spec["folds"]) - 1))]
    if kind == "field":
        where, field_ = draw(st.sampled_from([(spec, "folds"), (spec, "labels"), (spec, "protocol"), (fold, "name"),
                                              (fold, "train"), (fold, "valid"), (fold, "test")]))
        wrong = {"folds": lambda v: not isinstance(v, list) or bool(v) and not all(isinstance(f, dict) for f in v),
                 "labels": lambda v: v is not None and not isinstance(v, list) or isinstance(v, list),
                 "protocol": lambda v: v is not None and not isinstance(v, str),
                 "name": lambda v: not isinstance(v, str) or not v,
                 }.get(field_, lambda v: not isinstance(v, list) or any(not isinstance(k, str) for k in v))
        where[field_] = draw(JSON.filter(wrong))
        if field_ == "labels" and isinstance(where[field_], list) and all(isinstance(x, str) for x in where[field_]):
            where[field_] = [x for x in where[field_] if x not in LABELS]  # a label list missing data.tsv's labels
    elif kind == "unknown key":
        fold[draw(st.sampled_from(["train", "valid", "test"]))].append(draw(CELL))
    elif kind == "overlap":
        fold["train"].append(fold["test"][0])
    elif kind == "twice":
        spec["folds"].append(dict(fold))
    else:
        fold["test"] = []
    return json.dumps(spec).encode()


@GENERATED
@given(data=st.data())
def test_generated_folds_json_is_refused_naming_it(fx: Fixtures, earlier, data):
    broken = data.draw(broken_folds_json(Path(fx["man"], "folds.json").read_text()))
    with corpus_copy(fx) as corpus:
        (corpus / "folds.json").write_bytes(broken)
        refused(["audit", corpus, "--no-audio"], corpus / "folds.json", earlier)
        refused(["probe", "--features", fx["feats"], "--data", corpus, "--out", earlier["run"], "--epochs", "1",
                 "--bootstrap", "0", "--no-audio-audit", "--quiet", "--device", "cpu"], corpus / "folds.json",
                earlier)
        refused([*FT.format(**fx.paths).replace(str(fx["man"]), str(corpus)).split(), "--out", earlier["ft"]],
                corpus / "folds.json", earlier)


#: a wrong value for each field of results.json that a table, an ensemble or a robustness run reads
RESULT_FIELDS = {
    "version": JSON.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2)),
    "format": JSON.filter(lambda v: v != "emotion2vec-probe-results"),
    "corpus": JSON.filter(lambda v: not isinstance(v, str) or not v),
    "source": JSON.filter(lambda v: not isinstance(v, str) or not v),
    "protocol": JSON.filter(lambda v: v is not None and not isinstance(v, str)),
    "task": JSON.filter(lambda v: v not in ("categorical", "soft", "multilabel", "regression")),
    "labels": JSON.filter(lambda v: v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v))),
    "summary": JSON.filter(lambda v: not isinstance(v, dict) or any(
        not isinstance(x, dict) or any(not isinstance(n, (int, float, type(None))) or isinstance(n, bool)
                                       for n in x.values()) for x in v.values())),
    "folds": JSON.filter(lambda v: not isinstance(v, list) or any(not isinstance(f, dict) for f in v)),
}


@st.composite
def broken_results_json(draw, text: str) -> bytes:
    kind = draw(st.sampled_from(["truncated", "json", "field", "missing"]))
    if kind == "truncated":
        return text.encode()[:draw(st.integers(0, text.rindex("}") - 1))]
    if kind == "json":
        return json.dumps(draw(JSON.filter(lambda v: not isinstance(v, dict)))).encode()
    result = json.loads(text)
    if kind == "missing":
        del result[draw(st.sampled_from(["corpus", "source", "summary"]))]
    else:
        name = draw(st.sampled_from(sorted(RESULT_FIELDS)))
        result[name] = draw(RESULT_FIELDS[name])
    return json.dumps(result).encode()


@GENERATED
@given(data=st.data())
def test_generated_results_json_is_refused_naming_it(fx: Fixtures, earlier, data):
    import tempfile

    broken = data.draw(broken_results_json(Path(fx["run"], "results.json").read_text()))
    run = Path(tempfile.mkdtemp(prefix="run_", dir=fx.base))
    try:
        for name in ("results.json", "predictions.tsv", "valid_predictions.tsv"):
            shutil.copy(fx["run"] / name, run / name)
        shutil.copytree(fx["run"] / "heads", run / "heads")
        (run / "results.json").write_bytes(broken)
        refused(["report", run, fx["run2"], "--out", earlier["table"]], run / "results.json", earlier)
        refused(["ensemble", run, fx["run2"], "--out", earlier["ensemble"], "--bootstrap", "0", "--quiet"],
                run / "results.json", earlier)
        refused(["robustness", run, "--data", fx["man"], "--out", run / "robustness", "--quiet"],
                run / "results.json", earlier)
    finally:
        shutil.rmtree(run)


@st.composite
def broken_index_tsv(draw, text: str) -> tuple[bytes, str]:
    """index.tsv with its header broken, a needed row gone or failed, its file missing or outside the folder, NUL
    or non-UTF-8 bytes. -> (the file, what the message must name: "index.tsv" or the folder)."""
    lines = text.rstrip("\n").split("\n")
    row = draw(st.integers(1, len(lines) - 1))
    cells = lines[row].split("\t")
    kind = draw(st.sampled_from(["header", "row gone", "failed", "output", "outside", "bytes", "truncated"]))
    if kind == "header":
        header = lines[0].split("\t")
        col = draw(st.integers(0, 3))
        header[col] = draw(CELL.filter(lambda t: t not in ("key", "path", "frames", "status", "output", "offset")))
        lines[0] = "\t".join(header)
    elif kind == "row gone":
        del lines[row]
    elif kind == "failed":
        cells[3] = draw(CELL.filter(lambda t: t != "ok"))
        lines[row] = "\t".join(cells)
    elif kind in ("output", "outside"):
        cells[4] = (draw(CELL.map(lambda t: f"gone/{t}.npy")) if kind == "output"
                    else draw(st.sampled_from(["../../outside.npy", "/etc/hostname", "../features/x.npy"])))
        lines[row] = "\t".join(cells)
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if kind == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\x00", b"\xff\xfe", b"\xc3\x28"])) + data[at:]
    elif kind == "truncated":
        data = data[:draw(st.integers(0, len(lines[0]) - 1))]
    return data, kind


@GENERATED
@given(data=st.data())
def test_generated_index_tsv_is_refused_naming_it(fx: Fixtures, earlier, data):
    import tempfile

    broken, _ = data.draw(broken_index_tsv(Path(fx["feats"], "index.tsv").read_text()))
    feats = Path(tempfile.mkdtemp(prefix="features_", dir=fx.base))
    try:
        shutil.copytree(fx["feats"], feats, dirs_exist_ok=True)
        (feats / "index.tsv").write_bytes(broken)
        refused(["probe", "--features", feats, "--data", fx["man"], "--out", earlier["run"], "--epochs", "1",
                 "--bootstrap", "0", "--no-audio-audit", "--quiet", "--device", "cpu"], feats, earlier)
    finally:
        shutil.rmtree(feats)


# ================================================================================================ the page
TROUBLESHOOTING = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"


def page_examples(text: str) -> list[tuple[str, int, str]]:
    """(command line, exit status, words of the message) of every ``emotion2vec`` line of the page's bash blocks,
    each followed by a ``# -> exit N: words`` line."""
    import re

    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = block.replace("\\\n", " ").splitlines()
        for line, after in zip(lines, lines[1:] + [""]):
            if line.startswith("emotion2vec "):
                m = re.match(r"# -> exit (\d+): (.*)$", after.strip())
                assert m, f"no '# -> exit N: message' line after {line!r}"
                out.append((" ".join(line.split()), int(m.group(1)), m.group(2).strip()))
    return out


def test_troubleshooting_page_runs_as_written(fx: Fixtures, tmp_path: Path, monkeypatch, urdu_dir):
    """Every command of docs/troubleshooting.md, in a workspace laid out as the docs assume, ends with the exit
    status and the message the page shows."""
    import shlex

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "emotion2vec_base.pt").symlink_to(fx["tiny"])
    for clip in urdu_dir.rglob("*.wav"):  # the corpus as a tree of links: nothing is written into the shared copy
        target = tmp_path / "data" / "urdu" / clip.relative_to(urdu_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(clip)
    monkeypatch.chdir(tmp_path)
    assert quiet_cli(["prepare", "urdu", "--root", "data/urdu", "--out", "manifests/urdu", "--no-audio-audit",
                      "--quiet"])[0] == 0
    examples = page_examples(TROUBLESHOOTING.read_text(encoding="utf-8"))
    assert len(examples) >= 5
    before = stat_snapshot(tmp_path)
    for line, code, words in examples:
        got, err = quiet_cli(shlex.split(line)[1:])
        assert (got, words in err) == (code, True), f"$ {line}\n-> exit {got}\n{err[-1500:]}"
    assert stat_snapshot(tmp_path) == before  # refused: nothing written
