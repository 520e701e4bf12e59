"""Which container runtime a node runs and where its configuration lives (read-only).

`detect()` looks at the host's files (config files, the distribution's well-known
directories, the package database) and returns a `runtimes.Runtime`; it never writes.

Why the containerd version matters and how we learn it: containerd before 2.0 merges an
imported file per plugin (an imported CRI section replaces the main one), so drop-ins
are only safe from 2.0 on; before that we edit the main file, keeping a byte-exact
backup. The version is read, in order, from the config (`version = 3` exists only in
2.x), from the package database (/var/lib/dpkg/status), and last from running the
host's binary with `--version` (hostexec.py; static Go binaries run from the host
root). When none tells, we assume 1.x: a direct edit works on every version, a drop-in
does not.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from typing import Any

from kata_installer import config, errors, hostexec, hostpaths
from kata_installer.runtimes import ConfigMode, Kind, Runtime

K3S = "/var/lib/rancher/k3s/agent/etc/containerd"
RKE2 = "/var/lib/rancher/rke2/agent/etc/containerd"
K0S_DIR = "/etc/k0s/containerd.d"
MICROK8S_TEMPLATE = "/var/snap/microk8s/current/args/containerd-template.toml"
_SIGNS = {
    "k3s": "/var/lib/rancher/k3s/agent",
    "rke2": "/var/lib/rancher/rke2/agent",
    "k0s": "/var/lib/k0s",
    "microk8s": "/var/snap/microk8s/current/args",
}
_UNIT_DIRS = (
    "/etc/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
_VERSION_RE = re.compile(r"(?:^|[^0-9.])v?(\d+)\.(\d+)(?:\.\d+)?")


def refuse_odd_link(host: hostpaths.HostRoot, path: str, tree: str) -> None:
    """A runtime config that is a symlink is followed only to an existing regular file
    under ``tree`` (the runtime's configuration directory); anything else is refused
    before it is read or written (a dangling link, or one to /etc/passwd, would
    otherwise get a TOML file written there)."""
    lexical = host.root / path.lstrip("/")
    if not lexical.is_symlink():
        return
    link = str(lexical.readlink())
    try:
        target = host.path(path)
        inside = target.is_relative_to(host.path(tree))
    except errors.InstallerError as exc:
        raise errors.HostError(f"{path} is a symlink to {link}: {exc}") from exc
    if not (inside and target.is_file()):
        raise errors.HostError(
            f"{path} is a symlink to {link}, which is not an existing regular file "
            f"under {tree}; refusing to read or write through it (replace the link with "
            "the file, or point it at one under that directory)"
        )


def read_toml(host: hostpaths.HostRoot, path: str) -> tuple[bytes | None, dict[str, Any]]:
    """Bytes and parsed TOML of a host file; HostError naming the file if malformed."""
    refuse_odd_link(host, path, posixpath.dirname(path) or "/")
    raw = host.read_bytes(path)
    if raw is None:
        return None, {}
    try:
        return raw, tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise errors.HostError(f"{path} is not valid TOML, refusing to edit it: {exc}") from exc


def _config_version(doc: dict[str, Any], raw: bytes | None, path: str) -> int:
    if raw is None:
        return 0
    value = doc.get("version", 1)
    if value not in (1, 2, 3):
        raise errors.HostError(f"{path}: unsupported containerd config version {value!r}")
    return int(value)


def _is_blank(doc: dict[str, Any]) -> bool:
    """A file with only comments (e.g. a distribution's placeholder config)."""
    return not doc


def _dpkg_version(host: hostpaths.HostRoot) -> tuple[int, int] | None:
    raw = host.read_bytes("/var/lib/dpkg/status")
    if raw is None:
        return None
    for stanza in raw.decode("utf-8", "replace").split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Package") in ("containerd", "containerd.io") and "installed" in fields.get(
            "Status", ""
        ):
            m = _VERSION_RE.search(" " + fields.get("Version", "").split(":")[-1])
            if m:
                return int(m.group(1)), int(m.group(2))
    return None


def _binary_version(host: hostpaths.HostRoot) -> tuple[tuple[int, int], str] | None:
    for candidate in ("/usr/local/bin/containerd", "/usr/bin/containerd"):
        real = host.path(candidate)
        if not real.is_file():
            continue
        out = hostexec.version_output(real)
        if out is None:
            continue
        for m in _VERSION_RE.finditer(out):
            if int(m.group(1)) in (1, 2, 3):
                return (int(m.group(1)), int(m.group(2))), candidate
    return None


def containerd_version(
    host: hostpaths.HostRoot, config_version: int
) -> tuple[tuple[int, int] | None, str]:
    if config_version == 3:
        return (2, 0), "config version 3"
    dpkg = _dpkg_version(host)
    if dpkg:
        return dpkg, "/var/lib/dpkg/status"
    found = _binary_version(host)
    if found:
        return found[0], f"{found[1]} --version"
    return None, ""


def _unit(host: hostpaths.HostRoot, candidates: tuple[str, ...]) -> str:
    for unit in candidates:
        if any(host.exists(f"{d}/{unit}.service") for d in _UNIT_DIRS):
            return unit
    return candidates[-1]


def _imports(doc: dict[str, Any], path: str) -> tuple[str, ...]:
    value = doc.get("imports", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.HostError(f"{path}: `imports` must be a list of strings")
    return tuple(value)


def _detect_containerd(host: hostpaths.HostRoot, cfg: config.InstallerConfig) -> Runtime:
    path = cfg.containerd_config_path or "/etc/containerd/config.toml"
    raw, doc = read_toml(host, path)
    cver = _config_version(doc, raw, path)
    blank = raw is not None and _is_blank(doc)
    version, source = containerd_version(host, cver)
    if cver in (0, 1) and blank:
        cver = 0
    if cver == 0:
        cver = 3 if version and version[0] >= 2 else 2
    modern = version is not None and version[0] >= 2
    mode = ConfigMode.IMPORTS if modern and cver >= 2 else ConfigMode.DIRECT
    return Runtime(
        kind=Kind.CONTAINERD,
        distribution="k8s",
        unit="containerd",
        mode=mode,
        config_path=path,
        config_version=cver,
        version=version,
        version_source=source,
        drop_in_dir="/etc/containerd/conf.d",
        imports=_imports(doc, path),
        blank_config=blank,
    )


def _detect_k3s_like(host: hostpaths.HostRoot, dist: str) -> Runtime:
    base = K3S if dist == "k3s" else RKE2
    rendered = f"{base}/config.toml"
    raw, doc = read_toml(host, rendered)
    if raw is None:
        raise errors.HostError(
            f"{dist}: {rendered} does not exist; is {dist} running on this node? "
            "(kata-deploy extends the containerd configuration it renders)"
        )
    cver = _config_version(doc, raw, rendered)
    if host.exists(f"{base}/config-v3.toml.tmpl"):
        template = f"{base}/config-v3.toml.tmpl"
    elif host.exists(f"{base}/config.toml.tmpl"):
        template = f"{base}/config.toml.tmpl"
    else:
        template = f"{base}/config-v3.toml.tmpl" if cver == 3 else f"{base}/config.toml.tmpl"
    units = ("k3s-agent", "k3s") if dist == "k3s" else ("rke2-agent", "rke2-server")
    return Runtime(
        kind=Kind.CONTAINERD,
        distribution=dist,
        unit=_unit(host, units),
        mode=ConfigMode.TEMPLATE,
        config_path=rendered,
        config_version=max(cver, 2),
        version=(2, 0) if cver == 3 else None,
        version_source="rendered config version 3" if cver == 3 else "",
        template_path=template,
    )


def _detect_k0s(host: hostpaths.HostRoot) -> Runtime:
    if not (host.exists("/etc/k0s") or host.exists("/var/lib/k0s")):
        raise errors.HostError("k0s: neither /etc/k0s nor /var/lib/k0s exists on this node")
    main = "/etc/k0s/containerd.toml"
    raw, doc = read_toml(host, main)
    cver = _config_version(doc, raw, main) if raw is not None else 2
    return Runtime(
        kind=Kind.CONTAINERD,
        distribution="k0s",
        unit=_unit(host, ("k0scontroller", "k0sworker")),
        mode=ConfigMode.DROP_IN,
        config_path=main,
        config_version=max(cver, 2),
        drop_in_dir=K0S_DIR,
    )


def _detect_microk8s(host: hostpaths.HostRoot) -> Runtime:
    raw, doc = read_toml(host, MICROK8S_TEMPLATE)
    if raw is None:
        raise errors.HostError(f"microk8s: {MICROK8S_TEMPLATE} does not exist on this node")
    return Runtime(
        kind=Kind.CONTAINERD,
        distribution="microk8s",
        unit="snap.microk8s.daemon-containerd",
        mode=ConfigMode.DIRECT,
        config_path=MICROK8S_TEMPLATE,
        config_version=_config_version(doc, raw, MICROK8S_TEMPLATE),
    )


def detect(host: hostpaths.HostRoot, cfg: config.InstallerConfig) -> Runtime:
    """Find the node's runtime and its configuration; read-only."""
    dist = cfg.distribution
    if dist in ("k3s", "rke2"):
        return _detect_k3s_like(host, dist)
    if dist == "k0s":
        return _detect_k0s(host)
    if dist == "microk8s":
        return _detect_microk8s(host)
    for other, sign in _SIGNS.items():
        if host.exists(sign):
            raise errors.HostError(
                f"this node looks like {other} ({sign} exists) but the chart says "
                f"k8sDistribution=k8s; set k8sDistribution={other}"
            )
    has_crio = any(host.exists(p) for p in ("/etc/crio", "/usr/bin/crio", "/usr/local/bin/crio"))
    ctd_paths = ("/etc/containerd", "/usr/bin/containerd", "/usr/local/bin/containerd")
    has_ctd = bool(cfg.containerd_config_path) or any(host.exists(p) for p in ctd_paths)
    if has_crio and has_ctd:
        crio_sock = host.exists("/run/crio/crio.sock")
        ctd_sock = host.exists("/run/containerd/containerd.sock")
        if crio_sock == ctd_sock:
            raise errors.HostError(
                "both CRI-O and containerd are installed and neither socket "
                "(/run/crio/crio.sock, /run/containerd/containerd.sock) tells which one runs"
            )
        has_crio, has_ctd = crio_sock, ctd_sock
    if has_crio:
        return Runtime(
            kind=Kind.CRIO,
            distribution="k8s",
            unit="crio",
            mode=ConfigMode.DROP_IN,
            config_path="/etc/crio/crio.conf",
            drop_in_dir=cfg.crio_drop_in_dir or "/etc/crio/crio.conf.d",
        )
    if has_ctd:
        return _detect_containerd(host, cfg)
    raise errors.HostError(
        "no container runtime found: neither containerd (/etc/containerd, /usr/bin/containerd) "
        "nor CRI-O (/etc/crio, /usr/bin/crio) is on this node"
    )
