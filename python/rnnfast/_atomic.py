"""The package's one way to write a file atomically: readers (and a crash) see the old file or the new one.

The data goes to a temporary file in the target's directory (so ``os.replace`` is a rename within
one filesystem), is flushed and fsync'ed, then renamed over the target; the directory is fsync'ed
afterwards so the rename itself survives a power cut. On any failure the temporary file is removed
and the previous file is left as it was.

A writer that is killed cannot remove its temporary file, so the file's name carries the writer's
host and process id, and the next save of the same target removes the temporary files of writers
on this host that are no longer running (never one a live process may still be writing).
"""
from __future__ import annotations

import contextlib
import os
import socket
import stat
import tempfile

__all__ = ["atomic_write", "atomic_open"]


def atomic_write(path, data) -> None:
    """Replace ``path`` with ``data`` (bytes, or str written as UTF-8 with no newline translation)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        raise TypeError(f"atomic_write: data: expected bytes or str, got {type(data).__name__}")
    with atomic_open(path, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", *, encoding: str = "utf-8", newline: str | None = "\n"):
    """``with atomic_open(path, "w") as f: ...`` writes to a temp file that replaces ``path`` on success.

    ``mode`` is "wb" (binary) or "w" (text; ``encoding`` and ``newline`` as in ``open``). If the body
    raises, nothing at ``path`` changes.
    """
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open: mode: expected 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temps(directory, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(os.path.basename(path)) + f"{os.getpid()}.", suffix=".tmp",
                               dir=directory)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        try:
            f = os.fdopen(fd, mode, **kwargs)
        except BaseException:
            os.close(fd)
            raise
        with f:
            # mkstemp makes the file 0600; give it the mode a plain open() would (or the old file's)
            os.chmod(tmp, _target_mode(path))
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _temp_prefix(name: str) -> str:
    """Temporary files of ``name`` are ``.<name>.<host>.<pid>.<random>.tmp``."""
    host = socket.gethostname().replace(".", "_") or "localhost"
    return f".{name}.{host}."


def _remove_stale_temps(directory: str, name: str) -> None:
    """Best effort: remove temporary files of ``name`` left by dead writers on this host."""
    prefix = _temp_prefix(name)
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid = entry[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except OSError:
            pass


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of this process may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (owned by someone else), or unknown: keep the file
    return True


def _target_mode(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would briefly race with other threads)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_directory(directory: str) -> None:
    """Best effort: not every platform or filesystem lets a directory be opened and synced."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
