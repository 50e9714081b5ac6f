"""``emotion2vec pretrain CONFIG [OVERRIDES...]``: check the configuration, then run fairseq-hydra-train."""

from __future__ import annotations

import argparse

EPILOG = """\
CONFIG is a file name in configs/ without .yaml: emotion2vec_base (the official run; needs
model.init_from=base_libri.pt), emotion2vec_cold_start, emotion2vec_tiny_cpu (CPU example). OVERRIDES are Hydra
overrides, exactly as for fairseq-hydra-train (section.field=value). The plugin directory (common.user_dir) is added
for you. Mistakes fairseq would report as tracebacks (no task.data, fp16 without a GPU, a warm-up longer than the
run, more processes than GPUs) are named in one line each, and nothing starts.

examples:
  emotion2vec pretrain emotion2vec_tiny_cpu task.data=manifests/urdu_pretrain checkpoint.save_dir=outputs/tiny \\
      optimization.max_update=300
  emotion2vec pretrain emotion2vec_base task.data=manifests/pretrain model.init_from=checkpoints/base_libri.pt
  emotion2vec pretrain emotion2vec_base task.data=... --print   # the fairseq-hydra-train line (e.g. for torchrun)
  emotion2vec pretrain emotion2vec_base task.data=manifests/pretrain model.init_from=null common.fp16=false \
      common.cpu=true distributed_training.distributed_world_size=1     # the official config on a CPU

--print checks the configuration but not this machine (GPUs, the data folder): what this machine lacks is a note,
so a login node without a GPU prints the line for a GPU node.
"""


#: Hydra overrides may come before or after the options
EXTRA_POSITIONALS = "overrides"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("config", metavar="CONFIG", help="configuration name (configs/<CONFIG>.yaml)")
    p.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides, e.g. task.data=DIR")
    p.add_argument("--config-dir", metavar="DIR", help="folder of the configs (default: the repository's configs/)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the checked fairseq-hydra-train command instead of running it (no GPU needed here)")


def run(args: argparse.Namespace) -> int:
    import subprocess

    from ..pretrain.launch import (PretrainConfigError, compose, config_problems, fairseq_command, trainer_env,
                                   trainer_executable)

    cfg = compose(args.config, args.overrides, args.config_dir)
    problems = config_problems(cfg, machine=not args.print_only)
    if problems:
        raise PretrainConfigError("the configuration cannot run:\n  " + "\n  ".join(problems))
    command = fairseq_command(args.config, args.overrides, args.config_dir)
    if args.print_only:
        import shlex
        import sys

        # the line is for the machine that will run it: what this one lacks (GPUs, the data) is only a note
        for note in config_problems(cfg):
            print(f"note: on this machine: {note}", file=sys.stderr)
        print(shlex.join(command))
        return 0
    if trainer_executable() is None:
        raise PretrainConfigError("fairseq-hydra-train not found: install the train extra (pip install -e .[train])")
    return subprocess.call(command, env=trainer_env())
