"""Both images built for real from images/*/Dockerfile with buildah, and pushed.

hack/build-images.sh (through tests/images/build.py) builds them on the local stand-in
bases with the synthetic payload, cached by buildah's `--layers` (about 2 minutes cold
on this project's 2-core machine, under 10 s warm); then these read the real image
configs and run programs inside the images. Each test needs only its fixtures, so any
one runs alone; all carry the `image_build` marker (`-m image_build` selects them,
`-m "not image_build"` skips them).

Cases:
- dispatcher config: USER 65532:65532 in both the OCI and the Docker config (a builder
  once wrote gid 0), ENTRYPOINT and ENV as the Dockerfile says, labels with the version
  and the base actually used
- dispatcher at run time: uid, gid and groups all 65532; no pip in /opt/venv; the program
  starts by name through PATH
- installer config: USER 0:0, ENTRYPOINT, ENV with KATA_INSTALLER_PAYLOAD, payload label
- installer at run time: the payload's containerd-shim-kata-v2, nsenter, no pip in
  /opt/venv; the program starts by name
- nothing of the build host in either image: no pip.conf, no CA bundle, /root untouched
- push to a throwaway registry on 127.0.0.1: tags listed, manifests served under the
  digests buildah reported, one layer per layer of the local image, the bases there too;
  the registry is stopped afterwards
"""

from __future__ import annotations

import json
import pathlib
import urllib.error
from collections.abc import Callable

import pytest

from tests.images import build, dockerfiles, registry

pytestmark = [pytest.mark.image_build, pytest.mark.timeout(3600)]

TAG = "test"
BASE_DEBIAN = "localhost/kata-deploy-base/debian:bookworm-minbase"
BASE_PYTHON = "localhost/kata-deploy-base/python3-nonroot:bookworm"
DOCKERFILE = {"kata-dispatcher": "dispatcher", "kata-installer": "node-installer"}
# Run inside an image: facts about its filesystem and its user, as JSON.
PROBE = """
import glob, json, os, shutil, sys
print(json.dumps({
    "ids": [os.getuid(), os.getgid(), sorted(os.getgroups())],
    "pip": glob.glob("/opt/venv/bin/pip*") + glob.glob("/opt/venv/lib/python3*/site-packages/pip"),
    "exists": {p: os.path.lexists(p) for p in sys.argv[1:]},
    "which": {p: shutil.which(p) for p in ("nsenter", "kata-dispatcher", "kata-installer")},
}))
"""


@pytest.fixture(scope="session")
def built_images() -> dict[str, build.BuiltImage]:
    return build.build(tag=TAG)


def _config(local: str) -> list[dict[str, object]]:
    """The image's OCI and Docker configs (buildah keeps both; the push sends one)."""
    image = build.inspect(local)
    return [image["OCIv1"]["config"], image["Docker"]["config"]]


def _probe(local: str, *paths: str, user: str | None = None) -> dict[str, object]:
    result = build.run_in(local, "/usr/bin/python3", "-c", PROBE, *paths, user=user)
    assert result.returncode == 0, result.stderr
    value: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


def _dockerfile_final(name: str) -> dockerfiles.Stage:
    return dockerfiles.parse(dockerfiles.IMAGES[DOCKERFILE[name]]).final


@pytest.mark.parametrize("name", sorted(DOCKERFILE))
def test_image_config_is_what_the_dockerfile_says(
    built_images: dict[str, build.BuiltImage],
    name: str,
    record_property: Callable[[str, object], None],
) -> None:
    image = built_images[name]
    record_property("size_bytes", image.size)
    record_property("build_seconds", image.build_seconds)
    assert image.size > 0
    final = _dockerfile_final(name)
    user = "65532:65532" if name == "kata-dispatcher" else "0:0"
    entrypoint = final.all("ENTRYPOINT")[-1].json_args()
    env = [f"{k}={v}" for k, v in final.env().items()]
    for config in _config(image.local):
        assert config["User"] == user
        assert config["Entrypoint"] == entrypoint
        assert not config.get("Cmd")
        assert config["Env"] == env, "ENV must be exactly the final stage's, PATH first"
    labels = build.inspect(image.local)["Docker"]["config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == name
    assert labels["org.opencontainers.image.version"]
    if name == "kata-dispatcher":
        assert labels["org.opencontainers.image.base.name"] == BASE_PYTHON
    else:
        assert labels["org.opencontainers.image.base.name"] == BASE_DEBIAN
        assert labels["io.katacontainers.kata-deploy.payload"] == "synthetic"


def test_dispatcher_runs_as_65532_without_pip(built_images: dict[str, build.BuiltImage]) -> None:
    local = built_images["kata-dispatcher"].local
    facts = _probe(local)
    assert facts["ids"] == [65532, 65532, [65532]], "uid, gid and every group must be 65532"
    assert facts["pip"] == []
    # (nsenter is not checked: the stand-in base has Debian's util-linux, distroless not.)
    which = facts["which"]
    assert isinstance(which, dict)
    assert which["kata-dispatcher"] == "/opt/venv/bin/kata-dispatcher"
    assert which["kata-installer"] is None
    result = build.run_in(local, "kata-dispatcher", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: kata-dispatcher" in result.stdout


def test_installer_carries_the_payload_and_nsenter(
    built_images: dict[str, build.BuiltImage],
) -> None:
    local = built_images["kata-installer"].local
    shim = "/opt/kata-artifacts/bin/containerd-shim-kata-v2"
    defaults = "/opt/kata-artifacts/share/defaults/kata-containers"
    facts = _probe(local, shim, defaults)
    assert facts["ids"] == [0, 0, [0]]
    assert facts["pip"] == []
    assert facts["exists"] == {shim: True, defaults: True}
    assert facts["which"] == {
        "nsenter": "/usr/bin/nsenter",
        "kata-dispatcher": None,
        "kata-installer": "/opt/venv/bin/kata-installer",
    }
    result = build.run_in(local, "kata-installer", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: kata-installer" in result.stdout


@pytest.mark.parametrize("name", sorted(DOCKERFILE))
def test_nothing_of_the_build_host_is_in_the_image(
    built_images: dict[str, build.BuiltImage], name: str
) -> None:
    """The builds mount the host's CA bundle and a pip.conf as HOME; none of it stays."""
    leftovers = ["/etc/pip.conf", "/root/.config", "/root/.cache", "/etc/kata-build-ca.crt"]
    facts = _probe(built_images[name].local, *leftovers, user="0:0")
    assert facts["exists"] == dict.fromkeys(leftovers, False)


def test_push_serves_both_images_and_the_bases(tmp_path: pathlib.Path) -> None:
    with registry.serve(tmp_path) as address:
        images = build.build_and_push(address, tag=TAG)
        assert set(images) == {*build.PROGRAM_IMAGES, *build.BASE_IMAGES}
        for name, image in images.items():
            assert image.reference.startswith(f"{address}/{name}:"), image
            assert image.push_seconds > 0
            _, _, tag = image.reference.rpartition(":")
            assert tag in registry.get_json(address, f"/v2/{name}/tags/list")["tags"]
            manifest, digest = registry.manifest(address, name, tag)
            assert digest == image.digest, f"{name}: the registry serves another manifest"
            local_layers = build.inspect(image.local)["Docker"]["rootfs"]["diff_ids"]
            assert len(manifest["layers"]) == len(local_layers)
        assert images["kata-dispatcher"].pinned == (
            f"{address}/kata-dispatcher:{TAG}@{images['kata-dispatcher'].digest}"
        )
    with pytest.raises(urllib.error.URLError):
        registry.get(address, "/v2/")
