"""Transient markers on the host's /run: cleared by a reboot, never part of the state.

`ready` tells a DaemonSet readiness probe that this node's install finished since the
pod started; `<stage>.done` records which stages completed since boot (for operators
looking at a node). Nothing decides what to change from a marker: the stages' checks
look at the real files. Once no stage that changes the host is marked done (the last
revert), the install's directory goes with what is left in it, so an uninstall leaves
only the host lock (`lock.py`), which a running installer of another install may hold.
"""

from __future__ import annotations

import pathlib
from collections.abc import Collection

from kata_installer import fsutil, hostpaths

RUN_DIR = "/run/kata-deploy"


def directory(install_name: str) -> str:
    """/run/kata-deploy/<install>, e.g. /run/kata-deploy/kata-cicd."""
    return f"{RUN_DIR}/{install_name}"


def ready_path(install_name: str) -> str:
    return f"{directory(install_name)}/ready"


def _set(host: hostpaths.HostRoot, writer: fsutil.HostWriter, host_path: str) -> None:
    real = host.path(host_path)
    writer.make_dirs(real.parent)
    writer.write_file(real, b"")


def mark_done(
    host: hostpaths.HostRoot, writer: fsutil.HostWriter, install_name: str, stage: str
) -> None:
    _set(host, writer, f"{directory(install_name)}/{stage}.done")


def clear_done(
    host: hostpaths.HostRoot, writer: fsutil.HostWriter, install_name: str, stage: str
) -> None:
    writer.remove_file(host.path(f"{directory(install_name)}/{stage}.done"))


def forget_when_reverted(
    host: hostpaths.HostRoot,
    writer: fsutil.HostWriter,
    install_name: str,
    read_only: Collection[str],
) -> None:
    """When only the markers of read-only stages (`read_only`, by name) are left, nothing
    of the install is on the host any more: remove them, and the install's directory."""
    where = pathlib.Path(host.path(directory(install_name)))
    if not where.is_dir():
        return
    left = list(where.iterdir())
    transient = {f"{name}.done" for name in read_only}
    if any(p.name not in transient for p in left):
        return
    for p in left:
        writer.remove_file(p)
    writer.remove_dir_if_empty(where)


def set_ready(host: hostpaths.HostRoot, writer: fsutil.HostWriter, install_name: str) -> None:
    _set(host, writer, ready_path(install_name))


def clear_ready(host: hostpaths.HostRoot, writer: fsutil.HostWriter, install_name: str) -> None:
    writer.remove_file(host.path(ready_path(install_name)))


def is_ready(host: hostpaths.HostRoot, install_name: str) -> bool:
    return pathlib.Path(host.path(ready_path(install_name))).is_file()
