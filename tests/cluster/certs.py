"""Certificates and keys of a local cluster, made with the ``openssl`` command line.

A throwaway CA signs the apiserver's serving certificate (127.0.0.1, localhost and the
in-cluster service names) and one admin client certificate (group ``system:masters``),
used by the controllers, kwok, the runner and the tests. A separate RSA key pair signs
ServiceAccount tokens. Nothing here is meant to be secure: it lives and dies with the
cluster directory.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

LOG = logging.getLogger(__name__)

_DAYS = "3650"


@dataclass(frozen=True)
class Certs:
    """Paths of every certificate and key of one cluster."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_key: Path
    sa_pub: Path

    @classmethod
    def under(cls, pki: Path) -> Certs:
        return cls(
            ca_cert=pki / "ca.crt",
            ca_key=pki / "ca.key",
            serving_cert=pki / "apiserver.crt",
            serving_key=pki / "apiserver.key",
            admin_cert=pki / "admin.crt",
            admin_key=pki / "admin.key",
            sa_key=pki / "sa.key",
            sa_pub=pki / "sa.pub",
        )

    def complete(self) -> bool:
        return all(Path(p).exists() for p in vars(self).values())


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the local cluster needs the openssl command (apt-get install openssl)")
    result = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def _signed(pki: Path, name: str, subject: str, extensions: str) -> None:
    ext = pki / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", _DAYS, "-sha256", "-extfile", ext.name,
        "-out", f"{name}.crt", cwd=pki,
    )  # fmt: skip
    (pki / f"{name}.csr").unlink()
    ext.unlink()


def ensure(pki: Path) -> Certs:
    """Create the cluster's PKI under ``pki`` unless it is already complete."""
    certs = Certs.under(pki)
    if certs.complete():
        return certs
    pki.mkdir(parents=True, exist_ok=True)
    LOG.info("creating certificates in %s", pki)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=kata-deploy-test-ca",
        "-days", _DAYS, "-sha256", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", cwd=pki,
    )  # fmt: skip
    _signed(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local\n",
    )
    _signed(
        pki,
        "admin",
        "/O=system:masters/CN=kata-deploy-test-admin",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    (pki / "ca.srl").unlink(missing_ok=True)
    return certs


def client_cert(certs: Certs, name: str, subject: str) -> tuple[Path, Path]:
    """A client certificate signed by the cluster's CA (e.g. a kubelet's identity).

    Kept next to the CA as ``<name>.crt``/``<name>.key``; made once.
    """
    pki = certs.ca_cert.parent
    crt, key = pki / f"{name}.crt", pki / f"{name}.key"
    if not (crt.exists() and key.exists()):
        _signed(
            pki,
            name,
            subject,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n",
        )
        (pki / "ca.srl").unlink(missing_ok=True)
    return crt, key


def server_cert(certs: Certs, name: str, *, ips: tuple[str, ...]) -> tuple[Path, Path]:
    """A serving certificate for ``ips`` signed by the cluster's CA (e.g. the fault proxy
    of tests/faults, which clients trusting the cluster then trust unchanged).

    Kept next to the CA as ``<name>.crt``/``<name>.key``; made once.
    """
    pki = certs.ca_cert.parent
    crt, key = pki / f"{name}.crt", pki / f"{name}.key"
    if not (crt.exists() and key.exists()):
        sans = ",".join(f"IP:{ip}" for ip in ips)
        _signed(
            pki,
            name,
            f"/CN={name}",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n",
        )
        (pki / "ca.srl").unlink(missing_ok=True)
    return crt, key


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_text(
    *, server: str, ca_cert: Path, user: dict[str, str], tls_server_name: str = ""
) -> str:
    """A kubeconfig for ``server`` trusting the cluster CA, with ``user``'s credentials.

    ``tls_server_name`` names the serving certificate when ``server``'s address is not in
    it (the real nodes reach the apiserver through the gateway's address).
    """
    cluster: dict[str, str] = {"server": server, "certificate-authority-data": b64(ca_cert)}
    if tls_server_name:
        cluster["tls-server-name"] = tls_server_name
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kata-deploy-test", "cluster": cluster}],
        "users": [{"name": "user", "user": user}],
        "contexts": [
            {"name": "kata-deploy-test", "context": {"cluster": "kata-deploy-test", "user": "user"}}
        ],
        "current-context": "kata-deploy-test",
    }
    return yaml.safe_dump(doc, sort_keys=False)
