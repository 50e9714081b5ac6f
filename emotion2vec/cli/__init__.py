"""The ``emotion2vec`` command: one parser, one subcommand per job, one exit-code policy.

Exit status: 0 success; 1 some inputs failed (they are listed); 2 bad usage or bad input (the message names the
file or value); 3 an unexpected internal error (a bug: ``-v`` prints the traceback); 130 interrupted.

Building the parser imports neither torch nor any model code, so ``emotion2vec --help`` and
``emotion2vec COMMAND --help`` answer at once; each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from typing import Callable, Sequence

__all__ = ["main", "build_parser", "COMMANDS", "EXIT_OK", "EXIT_FAILED_INPUTS", "EXIT_BAD_INPUT", "EXIT_INTERNAL",
           "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = """\
typical use
  emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt --input my_wavs/ --out features/my_wavs
  emotion2vec prepare urdu --root data/urdu --out manifests/urdu
  emotion2vec extract --checkpoint checkpoints/emotion2vec_base.pt --input manifests/urdu/data.tsv \\
      --out features/urdu/emotion2vec_base
  emotion2vec probe --features features/urdu/emotion2vec_base --data manifests/urdu --out results/urdu/emotion2vec_base
  emotion2vec manifest /data/corpus --out manifests/pretrain --resample-to /data/corpus16k

exit status: 0 ok, 1 some inputs failed (listed), 2 bad usage or input, 3 internal error (-v: traceback),
  130 interrupted (finished outputs are kept; a re-run resumes). -v / --verbose goes before or after COMMAND.

sharded runs: torchrun --nproc_per_node N -m emotion2vec extract|predict|pseudo-label ...
"""

#: name -> (module under emotion2vec.cli, one-line help). Each module has add_arguments(parser) and run(args).
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "write data.tsv + folds for a downstream corpus"),
    "manifest": ("manifest", "scan audio folders into pretraining manifests (train.tsv / valid.tsv)"),
    "pretrain": ("pretrain", "check a pretraining configuration and run it with fairseq-hydra-train"),
    "extract": ("extract", "extract frame/utterance features of any layer to .npy"),
    "predict": ("predict", "recognise emotions with an emotion2vec+ or fine-tuned model (per file or window)"),
    "pseudo-label": ("pseudo_label", "label unlabelled speech with emotion recognisers, filter it into a training set"),
    "serve": ("serve", "a recognition service over HTTP with a web page (batched, bounded, API key)"),
    "probe": ("probe", "train and evaluate the downstream probe per fold (WA / UA / WF1 / macro-F1)"),
    "conversation": ("conversation", "predict the emotion of a speaker's next turn from the dialogue's previous turns"),
    "finetune": ("finetune", "fine-tune an upstream with a head end to end per fold; export the models"),
    "audit": ("audit", "leakage audit of a prepared corpus's folds (shared speakers, audio, text)"),
    "report": ("report", "one table across corpora and feature sources from finished probe runs"),
    "evaluate": ("evaluate", "score a trained probe, fine-tuned or released model on any labelled corpus"),
    "robustness": ("robustness", "re-score a probe or fine-tuning run's test set under eight signal perturbations"),
    "linguistics": ("linguistics", "valence of TTS sentences with positive / neutral / negative words (Wagner et al.)"),
    "ensemble": ("ensemble", "combine finished runs by hard / soft voting; search combinations on dev"),
    "convert": ("convert", "convert an official checkpoint to config.json + model.safetensors"),
    "export": ("export", "export a checkpoint to ONNX (dynamic batch and length, optional int8) for ONNX Runtime"),
    "demo": ("demo", "the whole pipeline on an embedded synthetic corpus, in minutes on a CPU"),
    "synth": ("synth", "write the demo's synthetic emotional-speech corpus"),
}

#: options whose values may start with '-' (e.g. --layers -2,-1)
_SIGNED_VALUE_OPTIONS = ("--layers", "--layer", "--concat-layer")


def _command_module(name: str):
    return importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, only that subcommand's arguments are added (nothing else is imported)."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="emotion2vec", description="Self-supervised speech emotion "
                                     "representations: pretraining, feature extraction, evaluation.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"emotion2vec {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback of an unexpected error")
    # -v is accepted after the command too (`emotion2vec extract ... -v`); SUPPRESS keeps a -v given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging, and the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".", parents=[common],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if only is None or only == name:
            _command_module(name).add_arguments(p)
    return parser


def _join_signed_values(argv: list[str]) -> list[str]:
    """``--layers -2,-1`` -> ``--layers=-2,-1`` (argparse would read ``-2,-1`` as an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _SIGNED_VALUE_OPTIONS and i + 1 < len(argv) and re.match(r"^-\d", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "note" if record.levelno == logging.INFO else record.levelname.lower()
        return f"{level}: {record.getMessage()}"


def _configure_logging(verbose: bool) -> None:
    """Our messages at INFO (DEBUG with -v); other libraries' only from WARNING up."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("emotion2vec").setLevel(logging.DEBUG if verbose else logging.INFO)


def _process() -> str:
    """`` (process R of N)`` in a process of a sharded job (torchrun), else nothing."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    return f" (process {rank} of {world})" if world not in ("", "1") else ""


def main(argv: Sequence[str] | None = None) -> int:
    from ..distributed import JobInterrupted
    from ..errors import Emotion2VecError
    from ..io.atomic import check_outputs, environment_error

    argv = _join_signed_values(sys.argv[1:] if argv is None else [str(a) for a in argv])
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args, extras = parser.parse_known_args(argv)
    module = _command_module(args.command)
    if extras:
        # a command whose trailing positionals are free-form (pretrain's Hydra overrides) takes them anywhere on
        # the line, before or after its options; anything else unknown is refused as argparse would
        into = getattr(module, "EXTRA_POSITIONALS", None)
        stray = [a for a in extras if a.startswith("-")] if into else extras
        if stray:
            parser.error(f"unrecognized arguments: {' '.join(stray)}")
        setattr(args, into, [*getattr(args, into), *extras])
    _configure_logging(args.verbose)
    run: Callable[[argparse.Namespace], int | None] = module.run
    try:
        # every output the command declares is checked before any work (a file where a folder goes, a parent that
        # is a file, a read-only folder); writes that fail later say "cannot write PATH: reason" (io.atomic)
        check_outputs(args, getattr(module, "OUTPUTS", {}), getattr(module, "OUTPUT_LABELS", None))
        return int(run(args) or 0)
    except Emotion2VecError as e:
        if not getattr(e, "reported_elsewhere", False):  # a sharded job's refusal is printed by process 0 alone
            print(f"emotion2vec {args.command}: error{_process()}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except JobInterrupted as e:
        print(f"emotion2vec {args.command}: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"emotion2vec {args.command}: interrupted; finished outputs are kept, re-run to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        refused = environment_error(e)  # the file system said no (full disk, permissions, a name too long)
        if refused is None:
            return _internal(args, e)
        print(f"emotion2vec {args.command}: error: {refused}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # noqa: BLE001 - a bug: say so, with the traceback on request
        return _internal(args, e)


def _internal(args: argparse.Namespace, e: Exception) -> int:
    """A bug: say so, with the traceback on request."""
    if args.verbose:
        import traceback

        traceback.print_exception(e)
    print(f"emotion2vec {args.command}: internal error: {type(e).__name__}: {e}"
          + ("" if args.verbose else " (re-run with -v for the traceback, and please report it)"),
          file=sys.stderr)
    return EXIT_INTERNAL
