"""Load and validate installer.yaml, the one document the chart renders for the node.

The schema is defined in node-installer/README.md. Validation is strict: an unknown
key, a wrong type or a bad value is a ConfigError naming the field
(`shims.qemu.dropIn: not valid TOML: ...`), raised before anything on the host changes.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import tomllib
from typing import Any

import yaml

from kata_installer import errors, shims

DISTRIBUTIONS = ("k8s", "k3s", "rke2", "k0s", "microk8s")
DEFAULT_NODE_LABEL = "katacontainers.io/kata-runtime"
_SUFFIX_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")
_SNAPSHOTTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LABEL_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


@dataclasses.dataclass(frozen=True)
class ShimConfig:
    name: str
    arches: tuple[str, ...]
    drop_in: str = ""
    allowed_hypervisor_annotations: tuple[str, ...] = ()
    snapshotter: str = ""
    crio_guest_pull: bool = False
    agent_https_proxy: str = ""
    agent_no_proxy: str = ""


@dataclasses.dataclass(frozen=True)
class CustomRuntime:
    name: str
    base_config: str
    drop_in: str = ""
    snapshotter: str = ""
    crio_pull_type: str = ""


DEFAULT_WAIT_RUNTIME_SECONDS = 300


@dataclasses.dataclass(frozen=True)
class InstallerConfig:
    suffix: str = ""
    debug: bool = False
    distribution: str = "k8s"
    node_label: str = DEFAULT_NODE_LABEL
    containerd_config_path: str = ""
    crio_drop_in_dir: str = ""
    default_shim: dict[str, str] = dataclasses.field(default_factory=dict)
    shims: dict[str, ShimConfig] = dataclasses.field(default_factory=dict)
    custom_runtimes: dict[str, CustomRuntime] = dataclasses.field(default_factory=dict)
    # installer.waitRuntimeSeconds: how long `label` waits for the node to be Ready and
    # its runtime to serve every handler (and revert-cri for them to go)
    wait_runtime_seconds: int = DEFAULT_WAIT_RUNTIME_SECONDS

    @property
    def install_name(self) -> str:
        """kata or kata-<suffix>: the prefix directory name and the handler stem."""
        return f"kata-{self.suffix}" if self.suffix else "kata"

    @property
    def prefix(self) -> str:
        """Host install prefix: /opt/kata or /opt/kata-<suffix>."""
        return f"/opt/{self.install_name}"

    def handler(self, name: str) -> str:
        """Runtime handler for a shim or custom runtime: kata-<name>[-suffix]."""
        return f"kata-{name}-{self.suffix}" if self.suffix else f"kata-{name}"


class _Reader:
    """Typed access to a mapping that reports the dotted path of a bad field."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        self.source = source
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.error(path, f"must be a mapping, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def error(self, field: str, problem: str) -> errors.ConfigError:
        return errors.ConfigError(f"{self.source}: {field}: {problem}")

    def field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, kind: type, default: Any) -> Any:
        self.seen.add(key)
        value = self.data.get(key, default)
        if value is None:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(
                self.field(key), f"must be {kind.__name__}, got {type(value).__name__} {value!r}"
            )
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key, list, [])
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{self.field(key)}[{i}]", f"must be a string, got {item!r}")
        return tuple(value)

    def sub(self, key: str) -> _Reader:
        self.seen.add(key)
        return _Reader(self.data.get(key), self.field(key), self.source)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.error(
                self.field(str(unknown[0])),
                f"unknown field (known here: {', '.join(sorted(self.seen))})",
            )


def _check_toml(reader: _Reader, key: str, text: str) -> str:
    if text.strip():
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise reader.error(reader.field(key), f"not valid TOML: {exc}") from exc
    return text


def _check_snapshotter(reader: _Reader, value: str) -> str:
    if value and not _SNAPSHOTTER_RE.match(value):
        raise reader.error(reader.field("snapshotter"), f"{value!r} is not a snapshotter name")
    return value


def _shim(reader: _Reader, name: str) -> ShimConfig:
    if name not in shims.CATALOGUE:
        raise reader.error(
            reader.path, f"unknown shim {name!r} (known: {', '.join(sorted(shims.CATALOGUE))})"
        )
    arches = reader.str_list("arches")
    for arch in arches:
        if arch not in shims.ARCHES:
            raise reader.error(
                reader.field("arches"),
                f"unknown architecture {arch!r} (known: {', '.join(shims.ARCHES)})",
            )
    cfg = ShimConfig(
        name=name,
        arches=arches,
        drop_in=_check_toml(reader, "dropIn", reader.get("dropIn", str, "")),
        allowed_hypervisor_annotations=reader.str_list("allowedHypervisorAnnotations"),
        snapshotter=_check_snapshotter(reader, reader.get("snapshotter", str, "")),
        crio_guest_pull=reader.get("crioGuestPull", bool, False),
        agent_https_proxy=reader.get("agentHttpsProxy", str, ""),
        agent_no_proxy=reader.get("agentNoProxy", str, ""),
    )
    reader.finish()
    tee = shims.CATALOGUE[name].tee
    if not tee and (cfg.crio_guest_pull or cfg.agent_https_proxy or cfg.agent_no_proxy):
        raise reader.error(
            reader.path, "crioGuestPull, agentHttpsProxy and agentNoProxy apply to TEE shims only"
        )
    return cfg


def _custom(reader: _Reader, name: str) -> CustomRuntime:
    if not _NAME_RE.match(name):
        raise reader.error(reader.path, "runtime name must be lower-case letters, digits and '-'")
    base = reader.get("baseConfig", str, "")
    if not base:
        raise reader.error(reader.field("baseConfig"), "is required")
    if base not in shims.CATALOGUE:
        raise reader.error(
            reader.field("baseConfig"),
            f"unknown shim {base!r} (known: {', '.join(sorted(shims.CATALOGUE))})",
        )
    pull = reader.get("crioPullType", str, "")
    if pull not in ("", "guest-pull"):
        raise reader.error(reader.field("crioPullType"), f'must be "" or guest-pull, not {pull!r}')
    cfg = CustomRuntime(
        name=name,
        base_config=base,
        drop_in=_check_toml(reader, "dropIn", reader.get("dropIn", str, "")),
        snapshotter=_check_snapshotter(reader, reader.get("snapshotter", str, "")),
        crio_pull_type=pull,
    )
    reader.finish()
    return cfg


def parse(data: Any, *, source: str) -> InstallerConfig:
    """Validate an already-parsed YAML document."""
    top = _Reader(data, "", source)
    version = top.get("version", int, 1)
    if version != 1:
        raise top.error("version", f"unsupported schema version {version} (this installer reads 1)")
    suffix = top.get("suffix", str, "")
    if suffix and not _SUFFIX_RE.match(suffix):
        raise top.error(
            "suffix", f"{suffix!r} must be 1-32 lower-case letters, digits or '-' (DNS label)"
        )
    debug = top.get("debug", bool, False)
    distribution = top.get("distribution", str, "k8s")
    if distribution not in DISTRIBUTIONS:
        raise top.error(
            "distribution", f"{distribution!r} is not one of {', '.join(DISTRIBUTIONS)}"
        )
    node_label = top.get("nodeLabel", str, DEFAULT_NODE_LABEL)
    if not _LABEL_RE.match(node_label):
        raise top.error("nodeLabel", f"{node_label!r} is not a valid label key")

    ctd = top.sub("containerd")
    ctd_path = ctd.get("configPath", str, "")
    ctd.finish()
    crio = top.sub("crio")
    crio_dir = crio.get("dropInDir", str, "")
    crio.finish()
    for field, value in (("containerd.configPath", ctd_path), ("crio.dropInDir", crio_dir)):
        if value and not value.startswith("/"):
            raise top.error(field, f"{value!r} must be an absolute host path")

    shim_map = top.sub("shims")
    shim_cfgs = {str(n): _shim(shim_map.sub(str(n)), str(n)) for n in shim_map.data}
    shim_map.finish()
    custom_map = top.sub("customRuntimes")
    customs = {str(n): _custom(custom_map.sub(str(n)), str(n)) for n in custom_map.data}
    custom_map.finish()
    clash = sorted(set(shim_cfgs) & set(customs))
    if clash:
        raise top.error(
            f"customRuntimes.{clash[0]}", "has the name of a shim; handlers would clash"
        )

    defaults = top.sub("defaultShim")
    default_shim: dict[str, str] = {}
    for arch in list(defaults.data):
        name = defaults.get(str(arch), str, "")
        if str(arch) not in shims.ARCHES:
            raise top.error(
                f"defaultShim.{arch}", f"unknown architecture (known: {', '.join(shims.ARCHES)})"
            )
        if name and name not in shim_cfgs:
            raise top.error(f"defaultShim.{arch}", f"{name!r} is not an enabled shim")
        if name:
            default_shim[str(arch)] = name
    defaults.finish()
    installer = top.sub("installer")
    wait = installer.get("waitRuntimeSeconds", int, DEFAULT_WAIT_RUNTIME_SECONDS)
    if wait < 1:
        raise top.error("installer.waitRuntimeSeconds", f"must be at least 1, not {wait}")
    installer.finish()
    top.finish()
    if not shim_cfgs and not customs:
        raise top.error("shims", "no shim and no custom runtime enabled: nothing to install")
    return InstallerConfig(
        suffix=suffix,
        debug=debug,
        distribution=distribution,
        node_label=node_label,
        containerd_config_path=ctd_path,
        crio_drop_in_dir=crio_dir,
        default_shim=default_shim,
        shims=shim_cfgs,
        custom_runtimes=customs,
        wait_runtime_seconds=wait,
    )


def load(path: pathlib.Path) -> InstallerConfig:
    """Read and validate installer.yaml; ConfigError names the file and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise errors.ConfigError(
            f"configuration file {path} does not exist (pass --config or KATA_INSTALLER_CONFIG)"
        ) from exc
    except OSError as exc:
        raise errors.ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse(data, source=str(path))
