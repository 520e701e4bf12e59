"""layout.handlers(): every handler, built once from the config, carrying its settings.

Cases: a shim's handler carries its dropIn, annotations, agent proxy, snapshotter and
guest pull; the defaultShim handler is a copy of its shim's under kata[-suffix] (origin
DEFAULT); a custom runtime carries its own dropIn, snapshotter and pull type and none of
its base shim's annotations or proxy; shims not built for the node's architecture and a
default shim that is not active make no handler; order and names with a suffix.
"""

from __future__ import annotations

import dataclasses

import yaml
from kata_installer import config, layout

DOC = """
version: 2
env: {multiInstallSuffix: ci}
defaultShim: {amd64: qemu-coco-dev, s390x: qemu}
shims:
  qemu:
    supportedArches: [amd64]
    allowedHypervisorAnnotations: [default_memory]
    containerd: {snapshotter: overlayfs}
  qemu-coco-dev:
    supportedArches: [amd64, s390x]
    dropIn: "[hypervisor.qemu]\\ndefault_vcpus = 2\\n"
    crio: {guestPull: true}
    agent: {httpsProxy: "http://proxy:3128", noProxy: "10.0.0.0/8"}
customRuntimes:
  runtimes:
    mine:
      baseConfig: qemu-coco-dev
      dropIn: "[hypervisor.qemu]\\ndefault_memory = 1024\\n"
      containerd: {snapshotter: nydus}
      crio: {pullType: guest-pull}
"""


def _handlers(arch: str) -> dict[str, layout.Handler]:
    cfg = config.parse(yaml.safe_load(DOC), source="installer.yaml")
    return {h.name: h for h in layout.handlers(cfg, arch)}


def test_handlers_carry_their_settings() -> None:
    got = _handlers("amd64")
    assert list(got) == ["kata-qemu-ci", "kata-qemu-coco-dev-ci", "kata-ci", "kata-mine-ci"]

    qemu = got["kata-qemu-ci"]
    assert (qemu.origin, qemu.source, qemu.shim.name) == (layout.Origin.SHIM, "qemu", "qemu")
    assert qemu.allowed_hypervisor_annotations == ("default_memory",)
    assert qemu.snapshotter == "overlayfs" and not qemu.guest_pull and qemu.drop_in == ""
    assert qemu.config_dir == f"{layout.RUNTIMES_DIR}/qemu"

    coco = got["kata-qemu-coco-dev-ci"]
    assert coco.drop_in.startswith("[hypervisor.qemu]")
    assert coco.guest_pull
    assert (coco.agent_https_proxy, coco.agent_no_proxy) == ("http://proxy:3128", "10.0.0.0/8")
    assert coco.describe() == "shim qemu-coco-dev"


def test_the_default_handler_is_its_shims_under_the_install_name() -> None:
    got = _handlers("amd64")
    default = got["kata-ci"]
    assert default.origin is layout.Origin.DEFAULT
    coco = got["kata-qemu-coco-dev-ci"]
    assert default == dataclasses.replace(coco, name="kata-ci", origin=layout.Origin.DEFAULT)


def test_a_custom_runtime_carries_its_own_settings_only() -> None:
    mine = _handlers("amd64")["kata-mine-ci"]
    assert (mine.origin, mine.source, mine.shim.name) == (
        layout.Origin.CUSTOM,
        "mine",
        "qemu-coco-dev",
    )
    assert mine.describe() == "custom runtime mine"
    assert mine.drop_in == "[hypervisor.qemu]\ndefault_memory = 1024\n"
    assert mine.snapshotter == "nydus" and mine.guest_pull
    assert mine.allowed_hypervisor_annotations == ()
    assert mine.agent_https_proxy == "" and mine.agent_no_proxy == ""
    assert mine.config_dir == f"{layout.CUSTOM_DIR}/mine"


def test_other_architectures_skip_shims_and_an_inactive_default() -> None:
    # s390x: qemu is amd64-only, so defaultShim.s390x (qemu) makes no kata-ci handler
    assert list(_handlers("s390x")) == ["kata-qemu-coco-dev-ci", "kata-mine-ci"]
