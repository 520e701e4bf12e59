"""Map host paths ("/etc/containerd/config.toml") onto the host-root mount.

Every host path the installer touches goes through `HostRoot.path()`. Symlinks are
resolved the way the host would resolve them: an absolute link target is read relative
to the host root, not to the container's own filesystem. Anything that would leave the
host root (".." above it, a link pointing outside) is refused, so a hostile or broken
host tree can never make us write outside the mount.

This module only reads (lstat/readlink); it never writes.
"""

from __future__ import annotations

import os
import pathlib
import stat

from kata_installer import errors

_MAX_LINKS = 40


class HostRoot:
    """The host's `/` as seen from the installer (default /host)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = pathlib.Path(os.path.normpath(root.absolute()))

    def path(self, host_path: str) -> pathlib.Path:
        """Return the real location of `host_path` under the root, symlinks resolved.

        The last component need not exist (we may be about to create it); if it is a
        symlink, it is followed, so a write lands on the link's target, not the link.
        """
        if not host_path.startswith("/"):
            raise errors.ConfigError(f"host path {host_path!r} must be absolute")
        parts = [p for p in host_path.split("/") if p not in ("", ".")]
        resolved: list[str] = []
        links = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not resolved:
                    raise errors.HostError(
                        f"host path {host_path!r} escapes the host root {self.root}"
                    )
                resolved.pop()
                continue
            candidate = self.root.joinpath(*resolved, part)
            try:
                st = candidate.lstat()
            except FileNotFoundError:
                resolved.append(part)
                continue
            if not stat.S_ISLNK(st.st_mode):
                resolved.append(part)
                continue
            links += 1
            if links > _MAX_LINKS:
                raise errors.HostError(f"too many symlinks resolving host path {host_path!r}")
            target = str(candidate.readlink())
            target_parts = [p for p in target.split("/") if p not in ("", ".")]
            if target.startswith("/"):
                resolved = []
            parts = target_parts + parts
        return self.root.joinpath(*resolved)

    def host_path(self, real: pathlib.Path) -> str:
        """The inverse of `path()`: "/etc/x" for "<root>/etc/x"."""
        rel = pathlib.Path(os.path.normpath(real.absolute())).relative_to(self.root)
        return "/" + rel.as_posix() if rel.parts else "/"

    def exists(self, host_path: str) -> bool:
        return self.path(host_path).exists()

    def read_bytes(self, host_path: str) -> bytes | None:
        """Bytes of a host file, or None if it does not exist."""
        real = self.path(host_path)
        try:
            return real.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError as exc:
            raise errors.HostError(f"{host_path} is a directory, expected a file") from exc
        except PermissionError as exc:
            raise errors.HostError(f"{host_path}: cannot read ({exc.strerror})") from exc
