"""``make demo``: the main job of kata-deploy, end to end, on a local cluster.

Starts a cluster (kwok nodes, runner-backed nodes and, with ``--real-nodes``, real
kubelet + containerd nodes), builds the images from images/*/Dockerfile and pushes them
and the chart to the cluster's OCI registry, installs the chart from there in job mode
with try-kata-nvidia-gpu.values.yaml, shows the paced rollout live, prints the labelled
nodes, the RuntimeClasses and each real node's runtime handlers, adds nodes and
upgrades, uninstalls and shows that nothing is left (in the cluster, in the real nodes'
handlers and on the runner-backed nodes' host directories), then tears the cluster down.
Any failed step ends the demo with a non-zero exit code and says which step and where
the logs are.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from tests.cluster import kubeapi, nodes
from tests.cluster.cluster import REPO, Cluster, ClusterSpec

CHART = REPO / "helm-chart" / "kata-deploy"
VALUES = CHART / "try-kata-nvidia-gpu.values.yaml"
RELEASE = "kata-deploy"
NAMESPACE = "kata-deploy"
LABEL = "katacontainers.io/kata-runtime"
PREFIX = "kata-deploy.katacontainers.io"
PARALLELISM = 4


class DemoError(RuntimeError):
    """A demo step failed."""


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _step(title: str) -> None:
    _say()
    _say(f"==> {title}")


def _run(cluster: Cluster, argv: Sequence[str], *, show: bool = True) -> str:
    result = subprocess.run(
        list(argv), env=cluster.env(), capture_output=True, text=True, check=False, cwd=REPO
    )
    if result.returncode != 0:
        raise DemoError(f"`{' '.join(argv)}` exited {result.returncode}:\n{result.stderr.strip()}")
    if show:
        _say("$ " + " ".join(a if " " not in a else repr(a) for a in argv))
        _say(result.stdout.rstrip())
    return result.stdout


def _kubectl(cluster: Cluster, *args: str, show: bool = True) -> str:
    return _run(cluster, ["kubectl", *args], show=show)


def _jobs(batch: Any, stage: str) -> list[dict[str, Any]]:
    data = kubeapi.get_json(
        batch.list_namespaced_job,
        NAMESPACE,
        label_selector=f"{PREFIX}/release={RELEASE},{PREFIX}/stage={stage}",
    )
    return list(data["items"])


def _state(job: dict[str, Any]) -> str:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond["type"] in {"Complete", "Failed"} and cond["status"] == "True":
            return str(cond["type"])
    return "Running"


def _helm_live(cluster: Cluster, args: Sequence[str], *, stage: str) -> None:
    """Run a helm command while printing one progress line a second about the rollout."""

    batch = cluster.api("BatchV1Api")
    argv = ["helm", "--kubeconfig", str(cluster.kubeconfig), *args]
    _say("$ " + " ".join(argv[:1] + argv[3:]))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    last = ""
    while proc.poll() is None:
        time.sleep(1.0)
        try:
            jobs = _jobs(batch, stage)
        except Exception as exc:  # noqa: BLE001 - progress is best effort; helm decides success
            _say(f"   (progress unavailable: {exc})")
            continue
        states = [_state(j) for j in jobs]
        running = states.count("Running")
        peak = max(peak, running)
        line = (
            f"   {stage} rollout: {states.count('Complete')} done, {running} running "
            f"(at most {peak} at once), {states.count('Failed')} failed, "
            f"{len(jobs)} Jobs created, {time.monotonic() - t0:4.0f}s"
        )
        if line != last:
            _say(line)
            last = line
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise DemoError(f"helm {args[0]} failed:\n{err.strip()}\n(pod logs: {cluster.pod_logs})")
    first = out.strip().splitlines()[:1]
    _say(f"   helm {args[0]} finished in {time.monotonic() - t0:.1f}s: {' '.join(first)}")


def _publish(cluster: Cluster) -> tuple[str, str, list[str]]:
    """Build and push both images and the chart; return the chart reference and image args."""
    import yaml

    from tests.images import build

    registry = cluster.ensure_registry()
    t0 = time.monotonic()
    built = build.build_and_push(registry, tag="demo")
    for image in built.values():
        _say(f"   {image.reference}: {image.size / 1e6:.1f} MB")
    _say(f"   images ready in {time.monotonic() - t0:.0f}s")
    version = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["version"])
    work = cluster.dir / "chart"
    work.mkdir(exist_ok=True)
    _run(cluster, ["helm", "package", str(CHART), "-d", str(work)], show=False)
    _run(cluster, ["helm", "push", str(work / f"kata-deploy-{version}.tgz"),
                   f"oci://{registry}/charts", "--plain-http"])  # fmt: skip
    installer = built["kata-installer"].reference.rpartition(":")
    dispatcher = built["kata-dispatcher"].reference.rpartition(":")
    args = [
        "--set", f"image.reference={installer[0]}", "--set", f"image.tag={installer[2]}",
        "--set", f"job.dispatcherImage.reference={dispatcher[0]}",
        "--set", f"job.dispatcherImage.tag={dispatcher[2]}",
    ]  # fmt: skip
    return f"oci://{registry}/charts/kata-deploy", version, args


def _show_handlers(cluster: Cluster, when: str) -> None:
    """What each real node's running containerd serves, as its kubelet reports it."""
    for name in cluster.real_node_names():
        handlers = [h or '""' for h in cluster.runtime_handlers(name)]
        _say(f"   {name} runtime handlers {when}: {', '.join(handlers)}")


def _show_result(cluster: Cluster) -> None:
    _kubectl(cluster, "get", "nodes", "-l", f"{LABEL}=true", "-L", "kubernetes.io/arch")
    _kubectl(cluster, "get", "runtimeclasses")
    _say(
        "   (only the runner-backed nodes really ran kata-installer on a host directory, so "
        "only they carry the label; the kwok nodes' per-node Jobs are simulated)"
    )


def run(cluster: Cluster, spec: ClusterSpec, *, keep: bool) -> int:
    """The demo; returns the exit code."""
    t0 = time.monotonic()
    step = "cluster up"
    try:
        _step(
            f"1. a local cluster: {spec.nodes} kwok nodes + {spec.runner_nodes} runner-backed"
            f" + {spec.real_nodes} real (kubelet, containerd, runc, kube-proxy)"
        )
        cluster.up(spec)
        _kubectl(cluster, "get", "nodes", "-L", "kubernetes.io/arch")

        step = "images and chart to the registry"
        _step("1b. build the images from images/*/Dockerfile, push them and the chart to the "
              "cluster's OCI registry")  # fmt: skip
        chart_ref, version, image_args = _publish(cluster)
        _show_handlers(cluster, "before install")

        step = "helm install"
        _step(
            f"2. helm install in job mode ({VALUES.name}), parallelism {PARALLELISM}: "
            "the dispatcher hook paces one Job per node"
        )
        _helm_live(
            cluster,
            ["install", RELEASE, chart_ref, "--version", version, "--plain-http",
             "-n", NAMESPACE, "--create-namespace", *image_args,
             "-f", str(VALUES), "--set", f"job.parallelism={PARALLELISM}", "--timeout", "5m"],
            stage="install",
        )  # fmt: skip

        step = "show the result"
        _step("3. labelled nodes and RuntimeClasses")
        _show_result(cluster)
        _show_handlers(cluster, "after install")

        step = "add nodes and upgrade"
        _step("4. add 4 kwok nodes and 1 runner-backed node, then helm upgrade --reuse-values")
        added = cluster.add_nodes(kwok=4, runner=1)
        _say(f"   added {', '.join(added)}")
        _helm_live(
            cluster,
            [
                "upgrade",
                RELEASE,
                chart_ref,
                "--version",
                version,
                "--plain-http",
                "-n",
                NAMESPACE,
                "--reuse-values",
                "--timeout",
                "5m",
            ],
            stage="install",
        )
        _kubectl(cluster, "get", "nodes", "-l", f"{LABEL}=true")

        step = "helm uninstall"
        _step("5. helm uninstall: the cleanup dispatcher reverts every labelled node")
        _helm_live(
            cluster, ["uninstall", RELEASE, "-n", NAMESPACE, "--timeout", "5m"], stage="cleanup"
        )

        step = "check that nothing is left"
        _step("6. nothing left: labels, RuntimeClasses, release objects, host directories")
        _check_clean(cluster)
        _show_handlers(cluster, "after uninstall")
    except DemoError as exc:
        _say(f"\ndemo FAILED at step '{step}': {exc}")
        _say(f"cluster logs: {cluster.dir / 'logs'}; pod logs: {cluster.pod_logs}")
        if not keep:
            cluster.down()
        return 1
    except Exception as exc:
        _say(f"\ndemo FAILED at step '{step}': {exc}")
        if not keep:
            cluster.down()
        raise
    if keep:
        _say(f"\ncluster kept: export KUBECONFIG={cluster.kubeconfig}")
    else:
        _step("7. tear down")
        cluster.down()
    _say(f"\ndemo finished in {time.monotonic() - t0:.0f}s: every step passed")
    return 0


def _check_clean(cluster: Cluster) -> None:
    labelled = _kubectl(cluster, "get", "nodes", "-l", LABEL, "-o", "name", show=False).split()
    if labelled:
        raise DemoError(f"nodes still labelled {LABEL}: {', '.join(labelled)}")
    _say(f"   no node carries {LABEL}")
    classes = _kubectl(cluster, "get", "runtimeclasses", "-o", "name", show=False).split()
    if classes:
        raise DemoError(f"RuntimeClasses left: {', '.join(classes)}")
    _say("   no RuntimeClass left")
    left = _kubectl(
        cluster,
        "get",
        "jobs,pods,configmaps,serviceaccounts,roles,rolebindings,daemonsets",
        "-n",
        NAMESPACE,
        "-o",
        "name",
        show=False,
    ).split()
    left = [o for o in left if not o.endswith(("/default", "/kube-root-ca.crt"))]
    scoped = _kubectl(
        cluster,
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "-o",
        "name",
        show=False,
    ).split()
    if left or scoped:
        raise DemoError(f"objects of the release left: {', '.join(left + scoped)}")
    _say(f"   namespace {NAMESPACE} and the cluster hold nothing of the release")
    for name in cluster.runner_node_names():
        if nodes.tree_digest(cluster.node_root(name)) != nodes.tree_digest(
            cluster.node_original(name)
        ):
            raise DemoError(f"host directory of {name} differs from its original")
    _say(
        f"   the host directories of {', '.join(cluster.runner_node_names())} are byte-equal "
        "to their originals"
    )
    for name in cluster.real_node_names():
        # The kubelet reports the restarted containerd's handlers within its status
        # period (5 s here); give it a few.
        deadline = time.monotonic() + 60
        while True:
            left = [h for h in cluster.runtime_handlers(name) if h.startswith("kata")]
            if not left:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"real node {name}'s containerd still serves {', '.join(left)}")
            time.sleep(1)
    if cluster.real_node_names():
        _say(f"   {', '.join(cluster.real_node_names())}: containerd serves no kata handler")
