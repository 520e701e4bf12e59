"""Crash safety: the process dies at every write point of install and of uninstall
(a fsutil fault hook raising a BaseException, which skips all cleanup as a kill would),
then a clean re-run converges: same tree as an uninterrupted install, and an uninstall
that restores the original host byte for byte.

Cases: containerd 2 with an imports edit (drop-in + main config), rke2 (template block).
"""

from __future__ import annotations

import pathlib

import pytest
from conftest import FIXTURES, MakeCtx, diff, seed_host, snapshot
from kata_installer import stages


class Crash(BaseException):
    pass


def _points(root: pathlib.Path, make_ctx: MakeCtx, cfg: pathlib.Path, action: str) -> int:
    count = 0

    def hook(_op: str, _path: pathlib.Path) -> None:
        nonlocal count
        count += 1

    getattr(stages, action)(make_ctx(root, cfg, fault=hook))
    return count


def _crash_at(n: int):  # type: ignore[no-untyped-def]
    seen = 0

    def hook(_op: str, _path: pathlib.Path) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            raise Crash

    return hook


@pytest.mark.parametrize("case", ["containerd2-noimports", "rke2"])
def test_crash_at_every_write_point_converges(
    case: str, tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    cfg = FIXTURES / case / "installer.yaml"
    ref = seed_host(case, tmp_path / "ref")
    original = snapshot(ref)
    install_points = _points(ref, make_ctx, cfg, "install")
    installed = snapshot(ref)
    uninstall_points = _points(ref, make_ctx, cfg, "uninstall")
    assert install_points > 10 and uninstall_points > 5

    for n in range(1, install_points + 1):
        root = seed_host(case, tmp_path / f"i{n}")
        with pytest.raises(Crash):
            stages.install(make_ctx(root, cfg, fault=_crash_at(n)))
        stages.install(make_ctx(root, cfg))
        assert diff(installed, snapshot(root)) == [], f"install crashed at write {n}"
        stages.uninstall(make_ctx(root, cfg))
        assert diff(original, snapshot(root)) == [], f"install crashed at write {n}"

    for n in range(1, uninstall_points + 1):
        root = seed_host(case, tmp_path / f"u{n}")
        stages.install(make_ctx(root, cfg))
        with pytest.raises(Crash):
            stages.uninstall(make_ctx(root, cfg, fault=_crash_at(n)))
        stages.uninstall(make_ctx(root, cfg))
        assert diff(original, snapshot(root)) == [], f"uninstall crashed at write {n}"
