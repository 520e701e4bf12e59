"""Load and validate installer.yaml, the one document the chart renders for the node.

The schema is defined in node-installer/README.md. Its keys are the node-side subset of
the chart's values.yaml, at the same paths (`env.multiInstallSuffix`,
`shims.<name>.containerd.snapshotter`, ...), so one grep finds a setting on both sides;
only `version` and `nodeLabel` are installer.yaml's own. Validation is strict: an
unknown key, a wrong type or a bad value is a ConfigError naming the field by that path
(`shims.qemu.dropIn: not valid TOML: ...`), raised before anything on the host changes.
The dataclasses below keep Python names; each field's comment gives its installer.yaml key.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import tomllib
from typing import Any

import yaml

from kata_installer import errors, shims

# installer.yaml's schema version. Only the chart and installer images of one release
# ever exchange the document, so a change of its keys bumps this without a migration.
VERSION = 2
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
    """One enabled shim: `shims.<name>`."""

    name: str
    arches: tuple[str, ...]  # supportedArches
    drop_in: str = ""  # dropIn
    allowed_hypervisor_annotations: tuple[str, ...] = ()  # allowedHypervisorAnnotations
    snapshotter: str = ""  # containerd.snapshotter
    crio_guest_pull: bool = False  # crio.guestPull (TEE shims)
    agent_https_proxy: str = ""  # agent.httpsProxy (TEE shims)
    agent_no_proxy: str = ""  # agent.noProxy (TEE shims)


@dataclasses.dataclass(frozen=True)
class CustomRuntime:
    """One custom runtime: `customRuntimes.runtimes.<name>`."""

    name: str
    base_config: str  # baseConfig
    drop_in: str = ""  # dropIn
    snapshotter: str = ""  # containerd.snapshotter
    crio_pull_type: str = ""  # crio.pullType


DEFAULT_WAIT_RUNTIME_SECONDS = 300


@dataclasses.dataclass(frozen=True)
class InstallerConfig:
    suffix: str = ""  # env.multiInstallSuffix
    debug: bool = False  # env.debug
    distribution: str = "k8s"  # k8sDistribution
    node_label: str = DEFAULT_NODE_LABEL  # nodeLabel (installer.yaml only)
    containerd_config_path: str = ""  # containerd.configPath
    crio_drop_in_dir: str = ""  # crio.dropInDir
    default_shim: dict[str, str] = dataclasses.field(default_factory=dict)  # defaultShim
    shims: dict[str, ShimConfig] = dataclasses.field(default_factory=dict)  # shims
    # customRuntimes.runtimes
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


def _snapshotter(parent: _Reader) -> str:
    """`<parent>.containerd.snapshotter`: a snapshotter name or ""."""
    ctd = parent.sub("containerd")
    value: str = ctd.get("snapshotter", str, "")
    ctd.finish()
    if value and not _SNAPSHOTTER_RE.match(value):
        raise ctd.error(ctd.field("snapshotter"), f"{value!r} is not a snapshotter name")
    return value


def _shim(reader: _Reader, name: str) -> ShimConfig:
    if name not in shims.CATALOGUE:
        raise reader.error(
            reader.path, f"unknown shim {name!r} (known: {', '.join(sorted(shims.CATALOGUE))})"
        )
    arches = reader.str_list("supportedArches")
    for arch in arches:
        if arch not in shims.ARCHES:
            raise reader.error(
                reader.field("supportedArches"),
                f"unknown architecture {arch!r} (known: {', '.join(shims.ARCHES)})",
            )
    crio = reader.sub("crio")
    guest_pull = crio.get("guestPull", bool, False)
    crio.finish()
    agent = reader.sub("agent")
    https_proxy = agent.get("httpsProxy", str, "")
    no_proxy = agent.get("noProxy", str, "")
    agent.finish()
    cfg = ShimConfig(
        name=name,
        arches=arches,
        drop_in=_check_toml(reader, "dropIn", reader.get("dropIn", str, "")),
        allowed_hypervisor_annotations=reader.str_list("allowedHypervisorAnnotations"),
        snapshotter=_snapshotter(reader),
        crio_guest_pull=guest_pull,
        agent_https_proxy=https_proxy,
        agent_no_proxy=no_proxy,
    )
    reader.finish()
    tee = shims.CATALOGUE[name].tee
    if not tee and (cfg.crio_guest_pull or cfg.agent_https_proxy or cfg.agent_no_proxy):
        raise reader.error(
            reader.path,
            "crio.guestPull, agent.httpsProxy and agent.noProxy apply to TEE shims only",
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
    crio = reader.sub("crio")
    pull = crio.get("pullType", str, "")
    crio.finish()
    if pull not in ("", "guest-pull"):
        raise crio.error(crio.field("pullType"), f'must be "" or guest-pull, not {pull!r}')
    cfg = CustomRuntime(
        name=name,
        base_config=base,
        drop_in=_check_toml(reader, "dropIn", reader.get("dropIn", str, "")),
        snapshotter=_snapshotter(reader),
        crio_pull_type=pull,
    )
    reader.finish()
    return cfg


def parse(data: Any, *, source: str) -> InstallerConfig:
    """Validate an already-parsed YAML document."""
    top = _Reader(data, "", source)
    version = top.get("version", int, VERSION)
    if version != VERSION:
        older = (
            " (the installer.yaml keys before they mirrored values.yaml)" if version == 1 else ""
        )
        raise top.error(
            "version",
            f"schema version {version}{older}, but this installer reads version {VERSION}: "
            "the chart and the installer image are from different releases; use the "
            "installer image of the chart's own release",
        )
    env = top.sub("env")
    suffix = env.get("multiInstallSuffix", str, "")
    if suffix and not _SUFFIX_RE.match(suffix):
        raise env.error(
            env.field("multiInstallSuffix"),
            f"{suffix!r} must be 1-32 lower-case letters, digits or '-' (DNS label)",
        )
    debug = env.get("debug", bool, False)
    env.finish()
    distribution = top.get("k8sDistribution", str, "k8s")
    if distribution not in DISTRIBUTIONS:
        raise top.error(
            "k8sDistribution", f"{distribution!r} is not one of {', '.join(DISTRIBUTIONS)}"
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
    custom_top = top.sub("customRuntimes")
    custom_map = custom_top.sub("runtimes")
    customs = {str(n): _custom(custom_map.sub(str(n)), str(n)) for n in custom_map.data}
    custom_map.finish()
    custom_top.finish()
    clash = sorted(set(shim_cfgs) & set(customs))
    if clash:
        raise top.error(
            f"customRuntimes.runtimes.{clash[0]}", "has the name of a shim; handlers would clash"
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
