"""The only module that changes host files.

Every write is compare-then-atomic: render the bytes, compare them with the bytes on
disk, do nothing if they are equal (no mtime change, so no restart), else write a temp
file in the same directory, fsync it, rename it over the target and fsync the
directory. A crash leaves either the old file or the new one, never half of either.
Whole trees (the Kata payload) are staged next to their target and renamed into place.

`HostWriter.fault` is a test hook called before every mutation with (operation, path);
raising from it simulates the process dying at that point. Under --dry-run nothing is
changed and each would-be change is logged.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pathlib
import shutil
import stat
from collections.abc import Callable, Iterator

from kata_installer import errors

log = logging.getLogger(__name__)

FaultHook = Callable[[str, pathlib.Path], None]


def _fail(action: str, path: pathlib.Path, exc: OSError) -> errors.HostError:
    why = exc.strerror or str(exc)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why += " (is the host directory mounted read-only?)"
    return errors.HostError(f"cannot {action} {path}: {why}")


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class HostWriter:
    """Performs (or, in dry-run, reports) every change to the host."""

    def __init__(
        self, *, dry_run: bool = False, fault: FaultHook | None = None, durable: bool = True
    ) -> None:
        self.dry_run = dry_run
        self.fault = fault
        self.durable = durable  # False only in tests: skip fsync (nothing else changes)
        self.changes = 0

    def _sync(self, fd: int) -> None:
        if self.durable:
            os.fsync(fd)

    def _sync_dir(self, path: pathlib.Path) -> None:
        if self.durable:
            _fsync_dir(path)

    def _point(self, operation: str, path: pathlib.Path) -> bool:
        """Called before each mutation; False means dry-run (do not mutate)."""
        if self.fault is not None:
            try:
                self.fault(operation, path)
            except OSError as exc:
                raise _fail(operation, path, exc) from exc
        self.changes += 1
        if self.dry_run:
            log.info("dry-run: would %s %s", operation, path)
            return False
        return True

    def write_file(self, path: pathlib.Path, data: bytes, *, mode: int | None = None) -> bool:
        """Atomically make `path` hold `data`; return False if it already did.

        `mode` None keeps the mode (and owner) of an existing file, else 0o644.
        """
        try:
            st = path.lstat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise _fail("inspect", path, exc) from exc
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise errors.HostError(f"cannot write {path}: it is a directory")
        want_mode = mode if mode is not None else (stat.S_IMODE(st.st_mode) if st else 0o644)
        if st is not None and stat.S_ISREG(st.st_mode):
            same_mode = stat.S_IMODE(st.st_mode) == want_mode
            if same_mode and st.st_size == len(data) and path.read_bytes() == data:
                return False
        if not self._point("write", path):
            return True
        for stale in path.parent.glob(f".{path.name}.kata-tmp-*"):
            # left by a run that died between writing and renaming
            with contextlib.suppress(OSError):
                stale.unlink()
        tmp = path.with_name(f".{path.name}.kata-tmp-{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, want_mode)
            try:
                os.write(fd, data)
                os.fchmod(fd, want_mode)
                if st is not None:
                    with contextlib.suppress(PermissionError):
                        os.fchown(fd, st.st_uid, st.st_gid)
                self._sync(fd)
            finally:
                os.close(fd)
            if self.fault is not None:
                self.fault("rename", path)  # a test may "crash" here, leaving tmp behind
            tmp.replace(path)
            self._sync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _fail("write", path, exc) from exc
        return True

    def remove_file(self, path: pathlib.Path) -> bool:
        """Remove a file or symlink; False if it was already gone."""
        if not (path.exists() or path.is_symlink()):
            return False
        if not self._point("remove", path):
            return True
        try:
            path.unlink()
            self._sync_dir(path.parent)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _fail("remove", path, exc) from exc
        return True

    def make_dirs(self, path: pathlib.Path, *, mode: int = 0o755) -> list[pathlib.Path]:
        """Create `path` and missing parents; return the ones created, outermost first."""
        missing: list[pathlib.Path] = []
        cur = path
        while not cur.exists():
            if cur.is_symlink():
                raise errors.HostError(f"{cur} is a dangling symlink; refusing to create it")
            missing.append(cur)
            cur = cur.parent
        if not cur.is_dir():
            raise errors.HostError(f"cannot create {path}: {cur} is not a directory")
        created: list[pathlib.Path] = []
        for d in reversed(missing):
            if not self._point("mkdir", d):
                created.append(d)
                continue
            try:
                d.mkdir(mode=mode)
                d.chmod(mode)
                self._sync_dir(d.parent)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _fail("create directory", d, exc) from exc
            created.append(d)
        return created

    def remove_dir_if_empty(self, path: pathlib.Path) -> bool:
        try:
            if not path.is_dir() or path.is_symlink() or any(path.iterdir()):
                return False
        except FileNotFoundError:
            return False
        if not self._point("rmdir", path):
            return True
        try:
            path.rmdir()
            self._sync_dir(path.parent)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _fail("remove directory", path, exc) from exc
        return True

    def copy_file(self, src: pathlib.Path, dst: pathlib.Path, *, mode: int) -> None:
        """Copy into a staging tree (no compare: the tree is new), fsynced."""
        if not self._point("copy", dst):
            return
        try:
            with src.open("rb") as fin:
                fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                try:
                    with os.fdopen(fd, "wb", closefd=False) as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
                        fout.flush()
                    os.fchmod(fd, mode)
                    self._sync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise _fail("copy to", dst, exc) from exc

    def new_file(self, dst: pathlib.Path, data: bytes, *, mode: int = 0o644) -> None:
        """Create a file inside a staging tree, fsynced."""
        if not self._point("create", dst):
            return
        try:
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            try:
                os.write(fd, data)
                os.fchmod(fd, mode)
                self._sync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _fail("create", dst, exc) from exc

    def symlink(self, target: str, dst: pathlib.Path) -> None:
        if not self._point("symlink", dst):
            return
        try:
            dst.symlink_to(target)
        except OSError as exc:
            raise _fail("create symlink", dst, exc) from exc

    def rename(self, src: pathlib.Path, dst: pathlib.Path) -> None:
        """Atomic rename (same filesystem); fsyncs both parents."""
        if not self._point("rename", dst):
            return
        try:
            src.rename(dst)
            self._sync_dir(dst.parent)
            if src.parent != dst.parent:
                self._sync_dir(src.parent)
        except OSError as exc:
            raise _fail(f"rename {src} to", dst, exc) from exc

    def remove_tree(self, path: pathlib.Path) -> bool:
        """Remove a directory tree we own (staging leftovers, the install prefix)."""
        if not (path.exists() or path.is_symlink()):
            return False
        if not self._point("remove tree", path):
            return True
        try:
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)
            self._sync_dir(path.parent)
        except OSError as exc:
            raise _fail("remove", path, exc) from exc
        return True

    @contextlib.contextmanager
    def open_lock_file(self, path: pathlib.Path) -> Iterator[int]:
        """Open (creating if needed) the host lock file; yields its descriptor.

        The lock file and its directory live on /run and are never removed: removing a
        lock file another process is waiting on would let two installers run at once.
        """
        if not self.dry_run:
            self.make_dirs(path.parent)
        elif not path.parent.is_dir():
            path = pathlib.Path("/dev/null")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _fail("open lock file", path, exc) from exc
        try:
            yield fd
        finally:
            os.close(fd)
