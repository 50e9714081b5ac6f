"""Checking a pretraining run's configuration before fairseq starts, and the ``emotion2vec pretrain`` launch line.

fairseq reports configuration mistakes as tracebacks from deep inside Hydra or the trainer ("Missing mandatory
value", "Could not infer task type", "Torch not compiled with CUDA enabled", a ZeroDivisionError in the cosine
schedule). :func:`config_problems` names each mistake in one sentence that says what to set; the fairseq task runs
it when it is set up, and ``emotion2vec pretrain`` runs it before launching ``fairseq-hydra-train`` (which also
adds ``common.user_dir``, so the plugin is always found).
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..errors import Emotion2VecError

__all__ = ["PretrainConfigError", "ConfigCheck", "config_problems", "default_config_dir", "compose", "fairseq_command",
           "trainer_executable", "trainer_env"]

PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding the emotion2vec package (the repository)
REPO_CONFIGS = PACKAGE_PARENT / "configs"


class PretrainConfigError(Emotion2VecError, ValueError):
    """A pretraining configuration fairseq would fail on; the message says what to set."""


def _get(cfg: Any, dotted: str, default: Any = None) -> Any:
    """``cfg.a.b`` or ``default``; a mandatory value left unset (``???``) reads as ``"???"``."""
    from omegaconf import DictConfig, OmegaConf

    node = cfg
    for part in dotted.split("."):
        if isinstance(node, DictConfig):
            if OmegaConf.is_missing(node, part):
                return "???"
            if part not in node:
                return default
            node = node[part]
        elif isinstance(node, dict):
            if part not in node:
                return default
            node = node[part]
        else:
            return default
    return node


def config_problems(cfg: Any, cuda_available: bool | None = None, check_data: bool = True,
                    machine: bool = True) -> list[str]:
    """One sentence per mistake in a composed fairseq config (a DictConfig or nested dict); empty when fine.

    With ``machine=False`` only the configuration itself is checked: not what depends on the machine that runs it
    (its GPUs, the data folder on its disks), e.g. to print a launch line on a login node for a GPU node.
    """
    import torch

    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    problems = []
    data = _get(cfg, "task.data")
    train_tsv = Path(str(data)) / "train.tsv"
    if data in (None, "???", ""):
        problems.append("task.data is not set: add task.data=DIR, a folder with train.tsv written by "
                        "`emotion2vec manifest AUDIO_DIR --out DIR`")
    elif check_data and train_tsv.is_file():  # a manifest that is there is read, whichever machine runs it
        from ..io.manifests import ManifestError, read_pretrain_manifest

        try:
            read_pretrain_manifest(train_tsv)
        except ManifestError as e:
            problems.append(f"task.data={data}: {e} (write it with `emotion2vec manifest AUDIO_DIR --out {data}`)")
    elif check_data and machine:
        problems.append(f"task.data={data}: no train.tsv there (write it with `emotion2vec manifest AUDIO_DIR "
                        f"--out {data}`)")
    init_from = _get(cfg, "model.init_from")
    if init_from == "???":
        problems.append("model.init_from is not set: give model.init_from=checkpoints/base_libri.pt (data2vec 2.0 "
                        "base, as the official run) or model.init_from=null for a cold start")
    elif init_from not in (None, "") and machine and not Path(str(init_from)).exists():
        problems.append(f"model.init_from={init_from}: no such file (give the pretrained checkpoint, e.g. "
                        f"checkpoints/base_libri.pt, or model.init_from=null for a cold start)")
    problems += _value_problems(cfg)
    max_update = _whole(_get(cfg, "optimization.max_update")) or 0
    warmup = _whole(_get(cfg, "lr_scheduler.warmup_updates")) or 0
    if _get(cfg, "lr_scheduler._name") == "cosine" and max_update > 0 and warmup >= max_update:
        problems.append(f"lr_scheduler.warmup_updates={warmup} must be below optimization.max_update={max_update} "
                        f"(the cosine schedule decays over the updates after the warm-up): set e.g. "
                        f"lr_scheduler.warmup_updates={max(0, max_update // 10)}")
    if machine:
        problems += _machine_problems(cfg, cuda)
    return problems


def _whole(value: Any) -> int | None:
    """``value`` when it is a whole number (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _value_problems(cfg: Any) -> list[str]:
    """Values that cannot work whatever the machine: numbers that are not numbers or out of range (fairseq's schema
    catches some where fairseq is installed; these checks hold without it too)."""
    import math

    problems = []
    lr = _get(cfg, "optimization.lr")
    if lr not in (None, "???"):
        values = list(lr) if isinstance(lr, Sequence) and not isinstance(lr, str) else [lr]
        try:
            bad = not values or any(isinstance(v, bool) or not (math.isfinite(float(v)) and float(v) > 0)
                                    for v in values)
        except (TypeError, ValueError):
            bad = True
        if bad:
            problems.append(f"optimization.lr={values}: learning rates must be numbers > 0 (e.g. "
                            f"optimization.lr=[0.0005])")
    for key, meaning in (("optimization.max_update", "the updates to run; 0 = no limit"),
                         ("optimization.max_epoch", "the epochs to run; 0 = no limit"),
                         ("lr_scheduler.warmup_updates", "the warm-up updates")):
        value = _get(cfg, key)
        if value not in (None, "???") and (_whole(value) is None or value < 0):
            problems.append(f"{key}={value}: must be a whole number >= 0 ({meaning})")
    max_tokens = _get(cfg, "dataset.max_tokens")
    crop = _whole(_get(cfg, "task.max_sample_size")) or _whole(_get(cfg, "task.min_sample_size"))
    if max_tokens not in (None, "???"):
        if _whole(max_tokens) is None or max_tokens < 1:
            problems.append(f"dataset.max_tokens={max_tokens}: must be a whole number of samples per batch")
        elif crop and max_tokens < crop:
            problems.append(f"dataset.max_tokens={max_tokens} cannot hold one training crop of "
                            f"task.max_sample_size={crop} samples: set dataset.max_tokens >= {crop}")
    return problems


def _machine_problems(cfg: Any, cuda: bool) -> list[str]:
    """What this machine cannot run: half precision without a GPU, more processes than GPUs."""
    import torch

    problems = []
    half = [k for k in ("fp16", "memory_efficient_fp16", "bf16", "memory_efficient_bf16") if _get(cfg, f"common.{k}")]
    if half and not cuda:
        problems.append(f"common.{half[0]}=true needs a CUDA GPU and this machine has none: set "
                        f"common.{half[0]}=false common.cpu=true (as the tiny CPU config does; bf16 on a CPU is "
                        f"model.compute_dtype=bfloat16)")
    world = int(_get(cfg, "distributed_training.distributed_world_size", 1) or 1)
    have = torch.cuda.device_count() if cuda else 0
    if world > 1 and "RANK" not in os.environ and world > have:
        problems.append(f"distributed_training.distributed_world_size={world} but this machine has {have} GPU(s): "
                        f"set distributed_training.distributed_world_size={max(have, 1)} and raise "
                        f"optimization.update_freq to keep the effective batch (or launch with torchrun)")
    return problems


class ConfigCheck:
    """A Hydra callback (``hydra.callbacks`` in ``configs/emotion2vec_common.yaml``) that runs
    :func:`config_problems` when ``fairseq-hydra-train`` is called directly, before any fairseq code: fairseq checks
    the number of GPUs (``AssertionError: world size is 4 but have 0 available devices``) before it imports the
    plugin, so the task's own check comes too late for that mistake. Each problem is printed on one line and the
    process exits with status 2 (Hydra turns exceptions raised by callbacks into warnings, hence the exit). The
    other hooks of Hydra's callback interface do nothing (Hydra calls each by name; its base class is not imported
    so that this module does not need Hydra)."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        problems = config_problems(config)
        if problems:
            for problem in problems:
                print(f"emotion2vec: the configuration cannot run: {problem}", file=sys.stderr, flush=True)
            raise SystemExit(2)

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    on_run_start = on_run_end = on_multirun_start = on_multirun_end = on_job_end = on_compile_config = _nothing


def default_config_dir() -> Path:
    return REPO_CONFIGS


def compose(config_name: str, overrides: Sequence[str], config_dir: str | os.PathLike | None = None):
    """The configuration ``fairseq-hydra-train --config-dir DIR --config-name NAME OVERRIDES`` would start from:
    composed against fairseq's schema where fairseq is installed, so an override composes here exactly when it
    composes there."""
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    directory = Path(config_dir) if config_dir else default_config_dir()
    if not (directory / f"{config_name}.yaml").is_file():
        names = sorted(p.stem for p in directory.glob("*.yaml") if p.stem != "emotion2vec_common")
        raise PretrainConfigError(f"no config {config_name!r} in {directory} (there: {', '.join(names) or 'none'})")
    from ._fairseq import register_schema

    try:
        with warnings.catch_warnings():  # Hydra's note that schema matching by name is deprecated: fairseq's way
            warnings.simplefilter("ignore", UserWarning)
            register_schema(config_name)
            with initialize_config_dir(config_dir=str(directory.resolve()), version_base=None):
                return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        cause = str(e.__cause__).splitlines()[0] if e.__cause__ is not None and str(e.__cause__) else ""
        raise PretrainConfigError(f"config {config_name} with {' '.join(overrides) or 'no overrides'}: "
                                  f"{str(e).splitlines()[0]}" + (f": {cause}" if cause else "")) from None
    except yaml.YAMLError as e:
        broken = []
        for path in sorted(directory.rglob("*.yaml")):
            try:
                yaml.safe_load(path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
                mark = getattr(err, "problem_mark", None)
                broken.append(f"{path}" + (f":{mark.line + 1}" if mark is not None else "") + ": "
                              + (getattr(err, "problem", None) or str(err).splitlines()[0]))
        raise PretrainConfigError("invalid YAML: " + ("; ".join(broken) if broken else str(e).splitlines()[0])) \
            from None


def trainer_executable() -> str | None:
    """``fairseq-hydra-train`` beside this Python, else on ``PATH``; None when fairseq is not installed."""
    exe = Path(sys.executable).with_name("fairseq-hydra-train")
    return str(exe) if exe.exists() else shutil.which("fairseq-hydra-train")


def trainer_env() -> dict[str, str]:
    """The environment for a ``fairseq-hydra-train`` subprocess: the plugin imports this same emotion2vec package
    whatever the subprocess's working directory (run from a repository checkout, ``PYTHONPATH`` starts with the
    checkout; an installed package is found as usual)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if (PACKAGE_PARENT / "setup.py").is_file():
        env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def fairseq_command(config_name: str, overrides: Sequence[str], config_dir: str | os.PathLike | None = None) -> list[str]:
    """The ``fairseq-hydra-train`` command line, with ``common.user_dir`` pointing at the plugin."""
    from . import fairseq_user_dir

    exe = trainer_executable() or "fairseq-hydra-train"
    directory = Path(config_dir) if config_dir else default_config_dir()
    extra = [] if any(o.startswith("common.user_dir=") for o in overrides) else [f"common.user_dir={fairseq_user_dir()}"]
    return [exe, "--config-dir", str(directory.resolve()), "--config-name", config_name, *extra, *overrides]
