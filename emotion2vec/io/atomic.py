"""Writing outputs: checked before any work, written atomically, a refused write said the same way everywhere.

* :func:`atomic_write` (and its ``_bytes`` / ``_text`` / ``_npy`` forms): a crash or kill never leaves a
  half-written output behind. Files are created with the permissions the process's umask gives a new file (0644
  under umask 022), like ``open()`` would, not the 0600 of a temporary file.
* :func:`check_output_dir` / :func:`check_output_file`: an output that cannot be written (a file where a folder is
  expected or the reverse, a parent that is a file, a read-only folder) is refused by name before a model is loaded
  or a fold trained. The command line runs them for the outputs each command declares (``OUTPUTS`` in its module
  under :mod:`emotion2vec.cli`).
* :func:`writing`: a write that fails anyway (a full disk, a quota, a folder made read-only meanwhile) becomes
  :class:`OutputError` ``cannot write PATH: reason``. The atomic writers write through it, so every output does.
* :func:`environment_error`: the message for an ``OSError`` that escaped both (the file system said no, not a bug);
  the command line prints it with exit status 2.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..errors import Emotion2VecError

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_save_npy", "OutputError", "cannot_write",
           "writing", "check_output_dir", "check_output_file", "check_outputs", "environment_error"]


#: errors of the file system or the machine rather than of the program: exit 2 with their reason
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG,
                      errno.EFBIG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EMFILE, errno.ENFILE, errno.EIO,
                      errno.ELOOP, errno.ETXTBSY}
#: of those, the ones only a write gives
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


class OutputError(Emotion2VecError, OSError):
    """An output that cannot be written; the message names it and says why. (An ``OSError`` too, so code that
    treats a failed optional write, such as a cache, as harmless still does.)"""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)

    def __str__(self) -> str:
        return str(self.args[0])


def _reason(error: OSError | str) -> str:
    if isinstance(error, str):
        return error
    return error.strerror or str(error) or type(error).__name__


def cannot_write(path: str | os.PathLike, error: OSError | str) -> OutputError:
    """``cannot write PATH: reason`` (the reason of ``error``, or the text given)."""
    return OutputError(f"cannot write {path}: {_reason(error)}", path)


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Any ``OSError`` raised inside the block is an :class:`OutputError` naming ``path``."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        raise cannot_write(path, e) from None


def _label(option: str | None, path: Path) -> str:
    return f"{option} {path}" if option else str(path)


def _writable_ancestor(path: Path, target: Path) -> None:
    """The nearest existing folder at or above ``path`` must be a folder where a new entry can be made (a real
    probe: a temporary folder created and removed, so read-only mounts and permissions both count)."""
    existing = path
    while not existing.exists() and not existing.is_symlink():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise cannot_write(target, f"{existing} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".emotion2vec-write-check-", dir=existing)
    except OSError as e:
        where = "" if existing == target else f" (in {existing})"
        raise cannot_write(target, _reason(e) + where) from None
    os.rmdir(probe)


def check_output_dir(path: str | os.PathLike, option: str | None = "--out") -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created or written into."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{_label(option, p)}: a file, not a folder", p)
    _writable_ancestor(p, p)
    return p


def check_output_file(path: str | os.PathLike, option: str | None = "--out") -> Path:
    """Refuse, before any work, an output file that is a folder or whose folder cannot be created or written."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{_label(option, p)}: a folder, not a file", p)
    _writable_ancestor(p.parent, p)
    return p


def check_outputs(args: Any, outputs: Mapping[str, str], labels: Mapping[str, str | None] | None = None) -> None:
    """The outputs a command declares, ``{argument dest: "dir" | "file"}``, checked on the parsed ``args`` (an
    option left out is skipped); ``labels`` name them in messages (default ``--dest``)."""
    for dest, kind in outputs.items():
        value = getattr(args, dest, None)
        if not value:
            continue
        label = (labels or {}).get(dest, "--" + dest.replace("_", "-"))
        if kind == "dir":
            check_output_dir(value, label)
        elif kind == "file":
            check_output_file(value, label)
        else:  # pragma: no cover - a declaration error
            raise ValueError(f"output kind {kind!r} of {dest}: 'dir' or 'file'")


def environment_error(error: OSError) -> str | None:
    """What to tell the user about an ``OSError`` that no reader or writer translated, when the file system or the
    machine refused (full disk, permissions, a name too long, ...); None for other errors (bugs)."""
    if isinstance(error, Emotion2VecError) or error.errno not in ENVIRONMENT_ERRNOS:
        return None
    where = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
    if where is None:
        return f"{'cannot write' if error.errno in WRITE_ERRNOS else 'file system error'}: {_reason(error)}"
    return f"{'cannot write ' if error.errno in WRITE_ERRNOS else ''}{where}: {_reason(error)}"


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> None:
    """Call ``write(f)`` on a temporary file in the target directory, fsync, then rename over ``path``. A write the
    file system refuses (full disk, read-only folder, ...) is an :class:`OutputError` ``cannot write
    PATH: reason``; ``path`` is then as it was."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short temporary name: a long output name must not fail for its temporary file alone
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))
