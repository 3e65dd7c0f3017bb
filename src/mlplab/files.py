"""Writing files atomically: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary file beside `path` for writing; on success rename it over `path`, on error remove it.

        >>> with atomic_write("report.html", "w") as f:
        ...     f.write(html)

    Only a regular file (or nothing) may be at `path`: a folder, device, FIFO or socket there is refused with a
    ValueError before anything is written (renaming over /dev/null would replace the device). A symbolic link is
    kept and the file it points to is replaced. The new file gets the old file's permissions, or, for a new file,
    the usual ones for this user's umask (not mkstemp's 0600).
    """
    path = Path(check_regular_target(path))
    try:
        perms = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        perms = 0o666 & ~current_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        os.fchmod(fd, perms)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_regular_target(path: str | os.PathLike) -> Path:
    """The path to write for `path` (a symbolic link's target); a ValueError (IsADirectoryError for a folder,
    FileNotFoundError for a missing folder) when what is there is not a regular file."""
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise FileNotFoundError(f"{path}: folder {parent} does not exist") from None
        return target
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a folder; give a file name inside it")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file (a device, FIFO or socket); refusing to replace it")
    return target


def current_umask() -> int:
    """This process's umask, read without changing it where Linux shows it (/proc/self/status); elsewhere set and
    restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
