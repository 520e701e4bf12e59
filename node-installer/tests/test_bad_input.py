"""Bad input gets a clear error naming the file/field and leaves nothing half-written.

Cases: unknown shim, unknown field (at every level), dropIn that is not TOML (names the
shim), a bad snapshotter, TEE options on a non-TEE shim, a schema version 1 document
(chart and installer of different releases), bad suffix, malformed existing containerd
config, missing payload file, read-only host directory, missing /dev/kvm, suffix on
containerd 1.x, hostile symlinks in the host tree, label/unlabel without a node name or
API access, the CLI's exit codes. Found by test_fuzz_host_config: containerd configs
tomlkit cannot edit faithfully (an inline runtimes table, dotted keys, tables out of
order, a non-table where a table goes) and a CRI-O drop-in already at our name are
refused by host-check, naming the file, before anything is written; an import glob that
climbs with `..` gets our drop-in imported by name instead. Too little space under
/opt is refused by host-check on a fresh host, and by the artifacts stage on an upgrade,
before any copy.
"""

from __future__ import annotations

import errno
import pathlib
import shutil

import pytest
from conftest import FIXTURES, NODE, MakeCtx, diff, seed_host, snapshot
from kata_installer import cli, config, errors, hostpaths, stages
from kata_installer.stages import artifacts


def _cfg(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    p = tmp_path / "installer.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("shims: {qemu-fast: {}}", "shims.qemu-fast: unknown shim 'qemu-fast'"),
        (
            "installer: {waitRuntimeSeconds: 0}\nshims: {qemu: {}}",
            "installer.waitRuntimeSeconds: must be at least 1, not 0",
        ),
        (
            "installer: {waitRuntimeSeconds: soon}\nshims: {qemu: {}}",
            "installer.waitRuntimeSeconds: must be int",
        ),
        (
            "shims: {qemu: {supportedArches: [amd64], dropin: x}}",
            "shims.qemu.dropin: unknown field",
        ),
        (
            "shims: {qemu: {containerd: {snapshoter: x}}}",
            "shims.qemu.containerd.snapshoter: unknown field",
        ),
        (
            "shims: {qemu: {containerd: {snapshotter: 'a b'}}}",
            "shims.qemu.containerd.snapshotter: 'a b' is not a snapshotter name",
        ),
        (
            "shims: {qemu: {crio: {guestPull: true}}}",
            "shims.qemu: crio.guestPull, agent.httpsProxy and agent.noProxy apply to TEE shims",
        ),
        (
            "shims: {qemu-snp: {agent: {httpsProxy: 1}}}",
            "shims.qemu-snp.agent.httpsProxy: must be str",
        ),
        ("shims: {qemu: {dropIn: '[hypervisor.qemu'}}", "shims.qemu.dropIn: not valid TOML"),
        (
            "env: {multiInstallSuffix: Bad_Suffix}\nshims: {qemu: {}}",
            "env.multiInstallSuffix: 'Bad_Suffix'",
        ),
        (
            "shims: {qemu: {supportedArches: [x86]}}",
            "shims.qemu.supportedArches: unknown architecture 'x86'",
        ),
        (
            "customRuntimes: {runtimes: {r: {dropIn: ''}}}",
            "customRuntimes.runtimes.r.baseConfig: is required",
        ),
        (
            "customRuntimes: {runtimes: {r: {baseConfig: qemu, crio: {pullType: x}}}}",
            "customRuntimes.runtimes.r.crio.pullType: must be",
        ),
        (
            "shims: {qemu: {}}\ncustomRuntimes: {runtimes: {qemu: {baseConfig: qemu}}}",
            "customRuntimes.runtimes.qemu: has the name of a shim",
        ),
        ("customRuntimes: {r: {baseConfig: qemu}}", "customRuntimes.r: unknown field"),
        ("shims: {}", "nothing to install"),
        ("env: {debug: 'yes'}\nshims: {qemu: {}}", "env.debug: must be bool"),
        ("debug: true\nshims: {qemu: {}}", "debug: unknown field"),
        ("k8sDistribution: openshift\nshims: {qemu: {}}", "k8sDistribution: 'openshift'"),
        (
            "version: 1\nsuffix: ''\nshims: {qemu: {arches: [amd64]}}",
            "version: schema version 1 (the installer.yaml keys before they mirrored "
            "values.yaml), but this installer reads version 2: the chart and the installer "
            "image are from different releases",
        ),
        ("version: 3\nshims: {qemu: {}}", "this installer reads version 2"),
    ],
)
def test_config_errors_name_the_field(tmp_path: pathlib.Path, text: str, needle: str) -> None:
    with pytest.raises(errors.ConfigError, match=None) as exc:
        config.load(_cfg(tmp_path, text))
    assert needle in str(exc.value)
    assert str(tmp_path / "installer.yaml") in str(exc.value)


def test_malformed_existing_config(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    (root / "etc/containerd/config.toml").write_text("version = 3\n[plugins\n")
    before = snapshot(root)
    with pytest.raises(errors.HostError, match=r"/etc/containerd/config.toml is not valid TOML"):
        stages.install(make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml"))
    assert diff(before, snapshot(root)) == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (  # tomlkit raised ValueError: "Inline tables cannot contain a table"
            '[plugins."io.containerd.grpc.v1.cri".containerd]\n'
            '  runtimes = { runc = { runtime_type = "io.containerd.runc.v2" } }\n',
            "`plugins.io.containerd.grpc.v1.cri.containerd.runtimes` is an inline table",
        ),
        (  # tomlkit wrote the handlers under a top-level [containerd.runtimes.*]
            '[plugins."io.containerd.grpc.v1.cri"]\n  containerd.default_runtime_name = "runc"\n',
            "tomlkit would put the tables somewhere else",
        ),
        (  # tomlkit raised AttributeError: 'OutOfOrderTableProxy' object has no attribute
            "[plugins]\n"
            '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata-old]\n'
            '    runtime_path = "/opt/kata/bin/containerd-shim-kata-v2"\n'
            '  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]\n'
            '    runc = { runtime_type = "io.containerd.runc.v2" }\n',
            "OutOfOrderTableProxy",
        ),
        (  # the message named no file, and /opt was written before the cri stage refused
            '[plugins."io.containerd.grpc.v1.cri".containerd]\n  runtimes = "runc"\n',
            "`plugins.io.containerd.grpc.v1.cri.containerd.runtimes` is not a table",
        ),
    ],
    ids=["inline-table", "dotted-keys", "out-of-order", "not-a-table"],
)
def test_config_layout_we_cannot_edit(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, text: str, why: str
) -> None:
    root = seed_host("containerd16-fresh", tmp_path / "host")
    (root / "etc/containerd/config.toml").write_text("version = 2\n" + text)
    before = snapshot(root)
    with pytest.raises(errors.HostError) as exc:
        stages.install(make_ctx(root, FIXTURES / "containerd16-fresh" / "installer.yaml"))
    assert exc.value.failed_stage == "host-check"
    assert "/etc/containerd/config.toml: cannot add the Kata runtime handlers" in str(exc.value)
    assert why in str(exc.value)
    assert diff(before, snapshot(root)) == []


def test_foreign_crio_drop_in_at_our_name(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("crio", tmp_path / "host")
    (root / "etc/crio/crio.conf.d/50-kata.toml").write_text("[crio.runtime]\n")
    before = snapshot(root)
    with pytest.raises(errors.HostError) as exc:
        stages.install(make_ctx(root, FIXTURES / "crio" / "installer.yaml"))
    assert "/etc/crio/crio.conf.d/50-kata.toml exists and was not written" in str(exc.value)
    assert exc.value.failed_stage == "host-check"
    assert diff(before, snapshot(root)) == []  # refused before the artifacts stage ran


@pytest.mark.parametrize("glob", ["/../../outside/*.toml", "../containerd.d/*.toml"])
def test_import_glob_that_climbs_gets_an_entry_by_name(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, glob: str
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    config = root / "etc/containerd/config.toml"
    config.write_text(f'version = 3\nimports = ["{glob}"]\n')
    before = snapshot(root)
    ctx = make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml")
    stages.install(ctx)
    assert (root / "etc/containerd/conf.d/50-kata.toml").is_file()
    assert config.read_text() == (
        f'version = 3\nimports = ["{glob}", "/etc/containerd/conf.d/50-kata.toml"]\n'
    )
    stages.uninstall(make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml"))
    assert diff(before, snapshot(root)) == []


def test_missing_payload_file(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, payload: pathlib.Path
) -> None:
    broken = tmp_path / "payload"
    shutil.copytree(payload, broken, symlinks=True)
    (broken / "bin/qemu-system-x86_64").unlink()
    root = seed_host("containerd2-noimports", tmp_path / "host")
    before = snapshot(root)
    with pytest.raises(errors.HostError) as exc:
        stages.install(
            make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml", payload=broken)
        )
    assert "bin/qemu-system-x86_64" in str(exc.value) and "hypervisor.qemu.path" in str(exc.value)
    assert diff(before, snapshot(root)) == []


def test_read_only_directory(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    cfg = FIXTURES / "containerd2-noimports" / "installer.yaml"
    before = snapshot(root)

    def read_only_etc(_op: str, path: pathlib.Path) -> None:
        if "/etc/" in str(path):
            raise OSError(errno.EROFS, "Read-only file system")

    with pytest.raises(errors.HostError) as exc:
        stages.install(make_ctx(root, cfg, fault=read_only_etc))
    assert "etc/containerd" in str(exc.value) and "read-only" in str(exc.value)
    assert (root / "etc/containerd/config.toml").read_bytes() == before[
        "etc/containerd/config.toml"
    ][1]
    stages.install(make_ctx(root, cfg))  # once writable, a re-run converges
    stages.uninstall(make_ctx(root, cfg))
    assert diff(before, snapshot(root)) == []


def test_too_little_space_is_refused_before_anything_is_written(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    cfg = FIXTURES / "containerd2-noimports" / "installer.yaml"
    before = snapshot(root)
    monkeypatch.setattr(artifacts, "free_bytes", lambda _path: 1 << 20)
    with pytest.raises(
        errors.HostError, match=r"not enough space under /opt: need \d+ MiB, 1 MiB free"
    ):
        stages.install(make_ctx(root, cfg))
    assert diff(before, snapshot(root)) == []


def test_an_upgrade_short_of_space_keeps_what_is_installed(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    cfg = FIXTURES / "containerd2-noimports" / "installer.yaml"
    stages.install(make_ctx(root, cfg))
    installed = snapshot(root)
    target = next(p for p in (root / "opt").iterdir() if p.name.startswith("kata"))
    victim = next(
        p
        for p in sorted(target.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    )
    victim.write_bytes(b"changed")  # the artifacts stage must copy them again
    changed = snapshot(root)
    monkeypatch.setattr(artifacts, "free_bytes", lambda _path: 1 << 20)
    with pytest.raises(
        errors.HostError, match=r"not enough space in /opt: need \d+ MiB, 1 MiB free"
    ):
        stages.install(make_ctx(root, cfg))
    assert diff(changed, snapshot(root)) == []  # no staging copy, no half swap
    monkeypatch.undo()
    stages.install(make_ctx(root, cfg))  # with room again, it converges
    assert diff(installed, snapshot(root)) == []


def test_host_check_problems_are_listed(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd16-fresh", tmp_path / "host")
    (root / "dev/kvm").unlink()
    cfg = _cfg(tmp_path, "env: {multiInstallSuffix: ci}\nshims: {qemu: {supportedArches: [amd64]}}")
    with pytest.raises(errors.HostError) as exc:
        stages.run_apply(make_ctx(root, cfg), stages.by_name("host-check")[1])
    assert "/dev/kvm does not exist" in str(exc.value)
    assert "multiInstallSuffix='ci' needs" in str(exc.value)
    assert "1.6 (from /var/lib/dpkg/status)" in str(exc.value)


def test_arch_without_shims(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    cfg = _cfg(tmp_path, "shims: {qemu-snp: {supportedArches: [amd64]}}")
    with pytest.raises(errors.HostError, match="architecture s390x"):
        stages.run_apply(make_ctx(root, cfg, arch="s390x"), stages.by_name("host-check")[1])


def test_hostpaths_refuse_escapes(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc/containerd").symlink_to("/var/lib/containerd-conf")
    (root / "etc/evil").symlink_to("../../../../outside")
    host = hostpaths.HostRoot(root)
    # an absolute link target is read inside the host root, as the host would
    assert host.path("/etc/containerd/config.toml") == root / "var/lib/containerd-conf/config.toml"
    with pytest.raises(errors.HostError, match="escapes the host root"):
        host.path("/etc/evil/x")
    with pytest.raises(errors.HostError, match="escapes the host root"):
        host.path("/../etc/passwd")


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ("/etc/passwd", "not an existing regular file under /etc/containerd"),
        ("/etc/containerd/missing.toml", "not an existing regular file under /etc/containerd"),
        ("/srv/elsewhere.toml", "not an existing regular file under /etc/containerd"),
    ],
)
def test_symlinked_runtime_config_is_refused(
    tmp_path: pathlib.Path, make_ctx: MakeCtx, link: str, why: str
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "srv").mkdir()
    (root / "srv/elsewhere.toml").write_text("version = 2\n")
    config = root / "etc/containerd/config.toml"
    config.unlink()
    config.symlink_to(link)
    before = snapshot(root)
    ctx = make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml")
    with pytest.raises(
        errors.HostError, match=f"config.toml is a symlink to {link}, which is {why}"
    ) as exc:
        stages.install(ctx)
    assert exc.value.failed_stage == "host-check"  # refused before anything was written
    assert diff(before, snapshot(root)) == []
    assert (root / "etc/passwd").read_text().startswith("root:x:0:0")
    assert not (root / "etc/containerd/missing.toml").exists()


def test_symlink_to_a_file_in_the_runtime_tree_is_followed(
    tmp_path: pathlib.Path, make_ctx: MakeCtx
) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    config = root / "etc/containerd/config.toml"
    config.rename(root / "etc/containerd/real.toml")
    config.symlink_to("real.toml")
    stages.install(make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml"))
    assert config.is_symlink()
    assert "conf.d" in (root / "etc/containerd/real.toml").read_text()


def test_label_needs_node_name(tmp_path: pathlib.Path, make_ctx: MakeCtx) -> None:
    root = seed_host("containerd2-noimports", tmp_path / "host")
    ctx = make_ctx(root, FIXTURES / "containerd2-noimports" / "installer.yaml", node_name="")
    with pytest.raises(errors.ConfigError, match="node name is unknown"):
        stages.run_apply(ctx, stages.by_name("label")[1])


def test_label_without_credentials_is_exit_2_and_unreachable_api_exit_3(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, payload: pathlib.Path
) -> None:
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KATA_INSTALLER_KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    root = seed_host("containerd2-noimports", tmp_path / "host")
    cfg = str(FIXTURES / "containerd2-noimports" / "installer.yaml")
    argv = ["--config", cfg, "--host-root", str(root), "--payload", str(payload), "--arch", "amd64"]
    assert cli.run([*argv, "--node-name", NODE, "label"]) == errors.ExitCode.USAGE
    nowhere = tmp_path / "kubeconfig"
    nowhere.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
    )
    unreachable = [*argv, "--kubeconfig", str(nowhere), "--retry-budget", "0.3"]
    assert cli.run([*unreachable, "--node-name", NODE, "label"]) == errors.ExitCode.API_UNREACHABLE
    assert cli.run([*argv, "label"]) == errors.ExitCode.USAGE
    assert cli.run([*argv, "--config", str(tmp_path / "nope.yaml"), "cri"]) == errors.ExitCode.USAGE
    monkeypatch.setenv("KATA_INSTALLER_RESTART", "none")
    assert cli.run([*argv, "artifacts"]) == errors.ExitCode.OK
    assert cli.run([*argv, "cri"]) == errors.ExitCode.OK
    assert cli.run([*argv, "remove-artifacts"]) == errors.ExitCode.NODES_FAILED  # revert-cri first
    assert cli.run([*argv, "revert-cri"]) == errors.ExitCode.OK
    assert cli.run([*argv, "remove-artifacts"]) == errors.ExitCode.OK
