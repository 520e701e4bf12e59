"""The privileges matrix: what each ServiceAccount of the chart may and may not do.

One list, used twice: tests/e2e/test_privileges.py sends every request with the real
token of each ServiceAccount to the real kube-apiserver (writes with `dryRun=All`, on
objects that mostly do not exist: the API authorizes before it looks, so 404 means
"allowed" and 403 "refused"), and tests/docs/test_readme.py checks the README shows the
table `markdown()` makes of it.
"""

from __future__ import annotations

import dataclasses
import enum

NS = "priv"  # the release namespace of the test
RELEASE = "priv"
FULL = f"{RELEASE}-kata-deploy"


class Who(enum.StrEnum):
    """A ServiceAccount of the chart, in a mode."""

    INSTALLER_DS = "installer (daemonset)"
    INSTALLER_JOB = "installer (job)"
    DISPATCHER_DS = "dispatcher (daemonset: uninstall)"
    DISPATCHER_JOB = "dispatcher (job)"


@dataclasses.dataclass(frozen=True)
class Action:
    what: str
    method: str
    path: str
    allowed: frozenset[Who]
    body: str = ""


ALL = frozenset(Who)
INSTALLERS = frozenset({Who.INSTALLER_DS, Who.INSTALLER_JOB})
# both dispatchers: DaemonSet mode's uninstall sweep runs job mode's cleanup Jobs
DISPATCHERS = frozenset({Who.DISPATCHER_JOB, Who.DISPATCHER_DS})
NONE: frozenset[Who] = frozenset()

_JOB = ('{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"probe"},"spec":{"template":'
        '{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"x"}]}}}}')  # fmt: skip
_LEASE = ('{"apiVersion":"coordination.k8s.io/v1","kind":"Lease",'
          f'"metadata":{{"name":"{FULL}-dispatcher"}}}}')  # fmt: skip
_OTHER_LEASE = '{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"x"}}'
_PATCH = '{"metadata":{"labels":{"katacontainers.io/kata-runtime":"true"}}}'
_EVENT = ('{"apiVersion":"v1","kind":"Event","metadata":{"generateName":"n."},'
          '"involvedObject":{"kind":"Node","name":"n"},"reason":"KataInstalled"}')  # fmt: skip
_ROLEBINDING = ('{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding",'
                '"metadata":{"name":"x"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io",'
                '"kind":"ClusterRole","name":"admin"},"subjects":[]}')  # fmt: skip

J = f"/apis/batch/v1/namespaces/{NS}/jobs"
L = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"

MATRIX: tuple[Action, ...] = (
    # what each one needs
    Action("get a node", "GET", "/api/v1/nodes/no-such-node", INSTALLERS),
    Action("patch a node (the policy narrows it to its own)", "PATCH",
           "/api/v1/nodes/no-such-node?dryRun=All", INSTALLERS, _PATCH),
    Action("create Events in default", "POST", "/api/v1/namespaces/default/events?dryRun=All",
           INSTALLERS, _EVENT),
    Action("get its own DaemonSet", "GET",
           f"/apis/apps/v1/namespaces/{NS}/daemonsets/{FULL}", frozenset({Who.INSTALLER_DS})),
    Action("list nodes", "GET", "/api/v1/nodes?limit=1", DISPATCHERS),
    Action("create Jobs in its namespace", "POST", f"{J}?dryRun=All", DISPATCHERS, _JOB),
    Action("list Jobs in its namespace", "GET", f"{J}?limit=1", DISPATCHERS),
    Action("patch Jobs in its namespace (take over)", "PATCH", f"{J}/no-such-job?dryRun=All",
           DISPATCHERS, '{"metadata":{"labels":{"a":"b"}}}'),
    Action("delete Jobs in its namespace", "DELETE", f"{J}/no-such-job?dryRun=All", DISPATCHERS),
    Action("get the job-templates ConfigMap", "GET",
           f"/api/v1/namespaces/{NS}/configmaps/{FULL}-job-templates", DISPATCHERS),
    Action("create its Lease", "POST", f"{L}?dryRun=All", DISPATCHERS, _LEASE),
    Action("get its Lease", "GET", f"{L}/{FULL}-dispatcher", DISPATCHERS),
    Action("delete its Lease (to name its owner)", "DELETE",
           f"{L}/{FULL}-dispatcher?dryRun=All", DISPATCHERS),
    Action("list pods in its namespace", "GET", f"/api/v1/namespaces/{NS}/pods?limit=1",
           DISPATCHERS),
    Action("delete the installer DaemonSet", "DELETE",
           f"/apis/apps/v1/namespaces/{NS}/daemonsets/{FULL}?dryRun=All",
           frozenset({Who.DISPATCHER_DS})),
    # what none may do
    Action("delete a node", "DELETE", "/api/v1/nodes/no-such-node?dryRun=All", NONE),
    Action("patch a node's status", "PATCH", "/api/v1/nodes/no-such-node/status?dryRun=All",
           NONE, _PATCH),
    Action("list Secrets in its namespace", "GET", f"/api/v1/namespaces/{NS}/secrets", NONE),
    Action("list Secrets anywhere", "GET", "/api/v1/secrets", NONE),
    Action("create Pods", "POST", f"/api/v1/namespaces/{NS}/pods?dryRun=All", NONE,
           '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},'
           '"spec":{"containers":[{"name":"c","image":"x"}]}}'),
    Action("exec into a pod", "POST",
           f"/api/v1/namespaces/{NS}/pods/no-such-pod/exec?command=true", NONE),
    Action("list Jobs in another namespace", "GET", "/apis/batch/v1/namespaces/default/jobs",
           NONE),
    Action("create Jobs in another namespace", "POST",
           "/apis/batch/v1/namespaces/default/jobs?dryRun=All", NONE, _JOB),
    Action("get another ConfigMap", "GET", f"/api/v1/namespaces/{NS}/configmaps/other", NONE),
    Action("get another Lease", "GET", f"{L}/x", NONE),
    Action("update another Lease", "PUT", f"{L}/x?dryRun=All", NONE, _OTHER_LEASE),
    Action("delete another Lease", "DELETE", f"{L}/x?dryRun=All", NONE),
    Action("create Events in its namespace", "POST",
           f"/api/v1/namespaces/{NS}/events?dryRun=All", NONE, _EVENT),
    Action("list DaemonSets", "GET", f"/apis/apps/v1/namespaces/{NS}/daemonsets", NONE),
    Action("delete another DaemonSet", "DELETE",
           f"/apis/apps/v1/namespaces/{NS}/daemonsets/other?dryRun=All", NONE),
    Action("delete CronJobs (no reconcile)", "DELETE",
           f"/apis/batch/v1/namespaces/{NS}/cronjobs/{FULL}-reconcile?dryRun=All", NONE),
    Action("create RoleBindings", "POST",
           f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings?dryRun=All", NONE,
           _ROLEBINDING),
    Action("list ClusterRoles", "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", NONE),
)  # fmt: skip


def markdown() -> str:
    """The matrix as the README shows it: ✅ allowed, ❌ refused (403), one column each."""
    who = list(Who)
    head = "| request | " + " | ".join(w.value for w in who) + " |"
    rule = "|---|" + "---|" * len(who)
    rows = [
        f"| {a.what} | " + " | ".join("✅" if w in a.allowed else "❌" for w in who) + " |"
        for a in MATRIX
    ]
    return "\n".join([head, rule, *rows])
