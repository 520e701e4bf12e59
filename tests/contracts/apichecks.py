"""What an API server checks cheaply, applied without a server to what the chart renders.

Why: a fuzzed values file that renders must render objects a real API server accepts.
The real answer is a server-side dry run (tests/e2e/test_fuzz_values_dry_run.py); this
module catches most of what would fail there in milliseconds, so the fuzzing in
test_fuzz_values.py can run hundreds of cases with `make test-contracts`. It must not
talk to any server.

`problems(documents(manifest))` returns one line per problem, naming the template, the
object and the field. It checks every object of the chart's own templates (not the NFD subchart's):
- shape: apiVersion, kind and metadata.name present; every field known to the Kubernetes
  API at that place, with the right type (the official client's models, 1.37 API);
  integers rendered as integers (not `1e+07`);
- names: DNS-1123 subdomains or labels where Kubernetes wants them, with each kind's
  length limits (Job 63, CronJob 52), RBAC names as path segments;
- labels (keys and values) and annotations (keys, total size), node selectors;
- pod specs: container and volume names, images, pull policy, env names, resource names
  and non-negative quantities with requests within limits, mounts of existing volumes,
  host paths without `..`, priority class and ServiceAccount names, tolerations as the
  server validates them;
- Jobs (int32 fields, deadlines, restart policy), CronJobs (the schedule, as the cron
  parser the controller uses reads it), DaemonSets (selector matches the pod labels),
  RuntimeClasses (handler, overhead), ConfigMaps (keys, 1 MiB), and the per-node Jobs
  embedded in the job-templates ConfigMap, each checked as a Job.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import yaml
from kubernetes.client import models
from kubernetes.utils import quantity

Obj = dict[str, Any]

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(
    r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$"
)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
INT32_MAX = 2**31 - 1
CONFIGMAP_MAX = 1 << 20
ANNOTATIONS_MAX = 256 << 10
SOURCE = re.compile(r"^# Source: (?P<source>\S+)", re.MULTILINE)
OWN_TEMPLATES = "kata-deploy/templates/"
PULL_POLICIES = {"Always", "IfNotPresent", "Never"}
TOLERATION_OPERATORS = {"", "Exists", "Equal"}
TAINT_EFFECTS = {"", "NoSchedule", "PreferNoSchedule", "NoExecute"}
HOST_PATH_TYPES = {
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
}
STANDARD_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
# Fields whose map values are quantities: YAML numbers are fine there.
QUANTITY_MAPS = {
    ("V1ResourceRequirements", "limits"),
    ("V1ResourceRequirements", "requests"),
    ("V1Overhead", "pod_fixed"),
}


Documents = list[tuple[str, Obj]]


def load(text: str) -> Any:
    """One YAML document, read as PyYAML's safe loader reads it (libyaml: fast)."""
    return yaml.load(text, Loader=yaml.CSafeLoader)


def documents(manifest: str) -> Documents:
    """(template, object) for every non-empty document of `helm template` output."""
    out = []
    for text in re.split(r"^---\s*$", manifest, flags=re.MULTILINE):
        found = SOURCE.search(text)
        doc = load(text)
        if doc is not None:
            out.append((found["source"] if found else "?", doc))
    return out


def problems(docs: Documents) -> list[str]:
    """Every problem a server would find cheaply in the chart's own objects."""
    found: list[str] = []
    for source, doc in docs:
        if not source.startswith(OWN_TEMPLATES):
            continue
        found += [f"{source}: {p}" for p in check_object(doc)]
    return found


def check_object(doc: Any) -> list[str]:
    """Problems of one object; each names `<kind>/<name>` and the field."""
    if not isinstance(doc, dict):
        return [f"not a mapping: {doc!r:.80}"]
    kind, meta = doc.get("kind"), doc.get("metadata")
    if not isinstance(kind, str) or not isinstance(doc.get("apiVersion"), str):
        return [f"apiVersion and kind must be strings: {doc!r:.120}"]
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return [f"{kind}: metadata.name missing"]
    where = f"{kind}/{meta['name']}"
    out: list[str] = []
    model = getattr(models, f"V1{kind}", None)
    if model is None or not doc["apiVersion"].endswith("v1"):
        out.append(f"no v1 model for {doc['apiVersion']} {kind}")
    else:
        out += _shape(doc, model.__name__, "")
    out += _metadata(kind, meta)
    check = _KIND_CHECKS.get(kind)
    if check is not None:
        out += check(doc)
    return [f"{where}: {p}" for p in out]


# --- shape -------------------------------------------------------------------------


def _shape(value: Any, type_name: str, at: str, owner: tuple[str, str] | None = None) -> list[str]:
    """Type-check `value` against the client model's type `type_name`."""
    if type_name == "object":  # IntOrString, RawExtension, free-form
        return []
    if type_name.startswith("List["):
        if not isinstance(value, list):
            return [f"{at}: must be a list, not {type(value).__name__}"]
        inner = type_name[5:-1]
        return [p for i, v in enumerate(value) for p in _shape(v, inner, f"{at}[{i}]")]
    if type_name.startswith("Dict[str, "):
        if not isinstance(value, dict):
            return [f"{at}: must be a map, not {type(value).__name__}"]
        inner = type_name[10:-1]
        out = []
        for k, v in value.items():
            if not isinstance(k, str):
                out.append(f"{at}: key {k!r} is not a string")
            elif owner in QUANTITY_MAPS and isinstance(v, int | float) and not isinstance(v, bool):
                continue
            else:
                out += _shape(v, inner, f"{at}.{k}")
        return out
    primitive = {"str": str, "int": int, "bool": bool, "float": int | float, "datetime": str}
    if type_name in primitive:
        ok = isinstance(value, primitive[type_name])
        if type_name in ("int", "float") and isinstance(value, bool):
            ok = False
        return (
            [] if ok else [f"{at}: must be {type_name}, not {type(value).__name__} {value!r:.40}"]
        )
    model = getattr(models, type_name, None)
    if model is None:
        return []
    if not isinstance(value, dict):
        return [f"{at}: must be a {type_name} mapping, not {type(value).__name__}"]
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    out = []
    for key, sub in value.items():
        attr = by_json.get(key)
        if attr is None:
            out.append(f"{at}.{key}: unknown field of {type_name}")
        elif sub is not None:
            out += _shape(
                sub, model.openapi_types[attr], f"{at}.{key}".lstrip("."), (type_name, attr)
            )
    return out


# --- names, labels, annotations ----------------------------------------------------


def is_subdomain(name: str, limit: int = 253) -> bool:
    return len(name) <= limit and bool(DNS_SUBDOMAIN.match(name))


def is_label(name: str) -> bool:
    return len(name) <= 63 and bool(DNS_LABEL.match(name))


def is_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if "/" in key and not is_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_NAME_PART.match(name))


def is_label_value(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def label_problems(where: str, value: Any) -> list[str]:
    """Problems of a label map (metadata.labels, a nodeSelector, matchLabels)."""
    if not isinstance(value, dict):
        return [] if value is None else [f"{where}: must be a map"]
    out = []
    for k, v in value.items():
        if not isinstance(k, str) or not is_qualified_name(k):
            out.append(f"{where}: {k!r} is not a valid label key")
        if not is_label_value(v):
            out.append(f"{where}.{k}: {v!r:.80} is not a valid label value")
    return out


def annotation_problems(where: str, value: Any) -> list[str]:
    if not isinstance(value, dict):
        return [] if value is None else [f"{where}: must be a map"]
    out = [
        f"{where}: {k!r} is not a valid annotation key"
        for k in value
        if not isinstance(k, str) or not is_qualified_name(k.lower())
    ]
    size = sum(len(str(k)) + len(str(v)) for k, v in value.items())
    if size > ANNOTATIONS_MAX:
        out.append(f"{where}: {size} bytes, over the {ANNOTATIONS_MAX} allowed")
    return out


_RBAC_KINDS = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
_NAME_LIMITS = {"Job": 63, "CronJob": 52}


def _metadata(kind: str, meta: Obj) -> list[str]:
    name = meta["name"]
    out = []
    if kind in _RBAC_KINDS:
        if name in (".", "..") or "/" in name or "%" in name:
            out.append(f"metadata.name: {name!r} is not a valid path segment")
    elif not is_subdomain(name, _NAME_LIMITS.get(kind, 253)):
        out.append(
            f"metadata.name: {name!r} is not a DNS-1123 subdomain of at most "
            f"{_NAME_LIMITS.get(kind, 253)} characters"
        )
    namespace = meta.get("namespace")
    if namespace is not None and not (isinstance(namespace, str) and is_label(namespace)):
        out.append(f"metadata.namespace: {namespace!r} is not a DNS-1123 label")
    out += label_problems("metadata.labels", meta.get("labels"))
    out += annotation_problems("metadata.annotations", meta.get("annotations"))
    return out


# --- pods --------------------------------------------------------------------------


def _quantity(where: str, value: Any) -> tuple[list[str], Decimal | None]:
    text = str(value)
    if isinstance(value, bool) or not _QUANTITY.match(text):
        return [f"{where}: {value!r:.40} is not a quantity"], None
    try:
        parsed: Decimal = quantity.parse_quantity(text)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return [f"{where}: {value!r:.40}: {exc}"], None
    if parsed < 0:
        return [f"{where}: {value!r:.40} must not be negative"], parsed
    return [], parsed


def _resource_name(name: Any) -> bool:
    if not isinstance(name, str) or not is_qualified_name(name):
        return False
    return "/" in name or name in STANDARD_RESOURCES or name.startswith("hugepages-")


def resource_problems(where: str, value: Any) -> list[str]:
    """Problems of container resources, or of a RuntimeClass overhead (`requests` only)."""
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    parsed: dict[str, dict[str, Decimal]] = {}
    for part in ("requests", "limits"):
        parsed[part] = {}
        for name, amount in (value.get(part) or {}).items():
            if not _resource_name(name):
                out.append(f"{where}.{part}: {name!r} is not a resource name")
            problems_, q = _quantity(f"{where}.{part}.{name}", amount)
            out += problems_
            if q is not None:
                parsed[part][str(name)] = q
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            out.append(f"{where}.requests.{name}: {request} is above its limit {limit}")
    return out


def toleration_problems(where: str, value: Any) -> list[str]:
    """The server's rules for tolerations (core/validation validateTolerations)."""
    out = []
    for i, t in enumerate(value or []):
        at = f"{where}[{i}]"
        if not isinstance(t, dict):
            out.append(f"{at}: must be a mapping")
            continue
        key, op = t.get("key") or "", t.get("operator") or ""
        if key and not is_qualified_name(str(key)):
            out.append(f"{at}.key: {key!r} is not a valid label key")
        if not key and op != "Exists":
            out.append(f"{at}.operator: must be Exists when key is empty")
        if op not in TOLERATION_OPERATORS:
            out.append(f"{at}.operator: {op!r} is not Exists or Equal")
        if op == "Exists" and t.get("value"):
            out.append(f"{at}.value: must be empty when operator is Exists")
        if op != "Exists" and not is_label_value(t.get("value") or ""):
            out.append(f"{at}.value: {t.get('value')!r:.40} is not a valid label value")
        if t.get("effect", "") not in TAINT_EFFECTS:
            out.append(f"{at}.effect: {t.get('effect')!r} is not a taint effect")
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            out.append(f"{at}.effect: must be NoExecute when tolerationSeconds is set")
    return out


def pod_spec(where: str, spec: Any) -> list[str]:
    """Problems of a pod spec the server finds without looking anything up."""
    if not isinstance(spec, dict):
        return [f"{where}: must be a mapping"]
    out: list[str] = []
    volumes = {}
    for i, vol in enumerate(spec.get("volumes") or []):
        name = vol.get("name")
        if not isinstance(name, str) or not is_label(name) or name in volumes:
            out.append(f"{where}.volumes[{i}].name: {name!r} is not a unique DNS-1123 label")
        volumes[name] = vol
        host = vol.get("hostPath")
        if host is not None:
            path = host.get("path")
            if not isinstance(path, str) or not path or ".." in path.split("/"):
                out.append(f"{where}.volumes[{i}].hostPath.path: {path!r} (empty, or with ..)")
            if host.get("type", "") not in HOST_PATH_TYPES:
                out.append(f"{where}.volumes[{i}].hostPath.type: {host.get('type')!r}")
        if "configMap" in vol and not is_subdomain(str(vol["configMap"].get("name"))):
            out.append(f"{where}.volumes[{i}].configMap.name is not a DNS-1123 subdomain")
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            at = f"{where}.{group}[{i}]"
            out += _container(at, c, volumes)
            if c.get("name") in names:
                out.append(f"{at}.name: {c.get('name')!r} is not unique in the pod")
            names.add(c.get("name"))
    if not spec.get("containers"):
        out.append(f"{where}.containers: at least one container")
    for field in ("priorityClassName", "serviceAccountName"):
        value = spec.get(field)
        if value is not None and not (isinstance(value, str) and is_subdomain(value)):
            out.append(f"{where}.{field}: {value!r:.80} is not a DNS-1123 subdomain")
    for i, secret in enumerate(spec.get("imagePullSecrets") or []):
        if not isinstance(secret, dict) or not is_subdomain(str(secret.get("name", ""))):
            out.append(f"{where}.imagePullSecrets[{i}].name: not a DNS-1123 subdomain")
    out += label_problems(f"{where}.nodeSelector", spec.get("nodeSelector"))
    out += toleration_problems(f"{where}.tolerations", spec.get("tolerations"))
    return out


def _container(at: str, c: Any, volumes: dict[Any, Obj]) -> list[str]:
    if not isinstance(c, dict):
        return [f"{at}: must be a mapping"]
    out = []
    if not isinstance(c.get("name"), str) or not is_label(c["name"]):
        out.append(f"{at}.name: {c.get('name')!r} is not a DNS-1123 label")
    image = c.get("image")
    if not isinstance(image, str) or not image or image != image.strip():
        out.append(f"{at}.image: {image!r:.80} is empty or has surrounding whitespace")
    if c.get("imagePullPolicy") not in PULL_POLICIES:
        out.append(f"{at}.imagePullPolicy: {c.get('imagePullPolicy')!r}")
    for j, env in enumerate(c.get("env") or []):
        if not isinstance(env, dict) or not _ENV_NAME.match(str(env.get("name", ""))):
            out.append(f"{at}.env[{j}].name is not a valid variable name")
    out += resource_problems(f"{at}.resources", c.get("resources"))
    paths = set()
    for j, m in enumerate(c.get("volumeMounts") or []):
        if m.get("name") not in volumes:
            out.append(f"{at}.volumeMounts[{j}].name: no volume {m.get('name')!r}")
        if m.get("mountPath") in paths:
            out.append(f"{at}.volumeMounts[{j}].mountPath: {m.get('mountPath')!r} twice")
        paths.add(m.get("mountPath"))
    return out


def _template(where: str, template: Any) -> list[str]:
    if not isinstance(template, dict):
        return [f"{where}: must be a mapping"]
    meta = template.get("metadata") or {}
    out = label_problems(f"{where}.metadata.labels", meta.get("labels"))
    out += annotation_problems(f"{where}.metadata.annotations", meta.get("annotations"))
    return out + pod_spec(f"{where}.spec", template.get("spec"))


# --- kinds -------------------------------------------------------------------------


def job_spec(where: str, spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return [f"{where}: must be a mapping"]
    out = []
    for field in ("backoffLimit", "ttlSecondsAfterFinished", "parallelism", "completions"):
        value = spec.get(field)
        if isinstance(value, int) and not 0 <= value <= INT32_MAX:
            out.append(f"{where}.{field}: {value} is outside 0..{INT32_MAX}")
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not 0 < deadline < 2**63:
        out.append(f"{where}.activeDeadlineSeconds: {deadline} must be positive")
    template = spec.get("template") or {}
    policy = (template.get("spec") or {}).get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        out.append(f"{where}.template.spec.restartPolicy: {policy!r} is not Never or OnFailure")
    return out + _template(f"{where}.template", template)


def _job(doc: Obj) -> list[str]:
    return job_spec("spec", doc.get("spec"))


_CRON_FIELDS = (
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    (0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_DESCRIPTORS = {
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
}


def cron_problem(schedule: Any) -> str | None:
    """Why the CronJob controller's parser (robfig/cron, standard) refuses `schedule`."""
    if not isinstance(schedule, str):
        return "not a string"
    if "TZ=" in schedule:
        return "a time zone belongs in spec.timeZone"
    if schedule.startswith("@"):
        if schedule in _CRON_DESCRIPTORS or re.fullmatch(
            r"@every ([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+", schedule
        ):
            return None
        return f"unknown descriptor {schedule!r}"
    fields = schedule.split()
    if len(fields) != 5:
        return f"{len(fields)} fields, not 5"
    for text, (lo, hi, names) in zip(fields, _CRON_FIELDS, strict=True):
        for part in text.split(","):
            if not _cron_part(part.lower(), lo, hi, names):
                return f"{part!r} is not within {lo}-{hi}"
    return None


def _cron_part(part: str, lo: int, hi: int, names: tuple[str, ...]) -> bool:
    span, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        return False

    def bound(v: str) -> int | None:
        if v in names:
            return names.index(v) + lo
        return int(v) if v.isdigit() else None

    if span in ("*", "?"):
        return True
    first, _, last = span.partition("-")
    a, b = bound(first), bound(last) if last else bound(first)
    return a is not None and b is not None and lo <= a <= b <= hi


def _cronjob(doc: Obj) -> list[str]:
    spec = doc.get("spec") or {}
    out = []
    why = cron_problem(spec.get("schedule"))
    if why:
        out.append(f"spec.schedule: {spec.get('schedule')!r:.60}: {why}")
    template = spec.get("jobTemplate") or {}
    out += label_problems(
        "spec.jobTemplate.metadata.labels", (template.get("metadata") or {}).get("labels")
    )
    return out + job_spec("spec.jobTemplate.spec", template.get("spec"))


def _daemonset(doc: Obj) -> list[str]:
    spec = doc.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template = spec.get("template") or {}
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    out = label_problems("spec.selector.matchLabels", selector)
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        out.append("spec.selector does not match spec.template.metadata.labels")
    return out + _template("spec.template", template)


def _runtimeclass(doc: Obj) -> list[str]:
    out = []
    handler = doc.get("handler")
    if not isinstance(handler, str) or not is_label(handler):
        out.append(f"handler: {handler!r} is not a DNS-1123 label")
    overhead = (doc.get("overhead") or {}).get("podFixed")
    out += resource_problems("overhead", {"requests": overhead or {}})
    scheduling = doc.get("scheduling") or {}
    out += label_problems("scheduling.nodeSelector", scheduling.get("nodeSelector"))
    return out + toleration_problems("scheduling.tolerations", scheduling.get("tolerations"))


def _configmap(doc: Obj) -> list[str]:
    data = doc.get("data") or {}
    out = [
        f"data: {k!r} is not a valid key"
        for k in data
        if not (isinstance(k, str) and len(k) <= 253 and _CONFIGMAP_KEY.match(k))
    ]
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in data.items())
    if size > CONFIGMAP_MAX:
        out.append(f"data: {size} bytes, over the {CONFIGMAP_MAX} a ConfigMap holds")
    for key, text in data.items():
        if str(key).endswith("-job.yaml"):
            try:
                job = load(text)
            except yaml.YAMLError as exc:
                out.append(f"data.{key}: not YAML: {exc}")
                continue
            out += [f"data.{key}: {p}" for p in check_object(job)]
    return out


def _service_account(doc: Obj) -> list[str]:
    return [
        f"imagePullSecrets[{i}].name: not a DNS-1123 subdomain"
        for i, s in enumerate(doc.get("imagePullSecrets") or [])
        if not isinstance(s, dict) or not is_subdomain(str(s.get("name", "")))
    ]


_KIND_CHECKS = {
    "Job": _job,
    "CronJob": _cronjob,
    "DaemonSet": _daemonset,
    "RuntimeClass": _runtimeclass,
    "ConfigMap": _configmap,
    "ServiceAccount": _service_account,
}
