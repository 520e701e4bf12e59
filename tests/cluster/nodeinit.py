"""PID 1 of a real worker node: its mounts, then containerd, the kubelet and kube-proxy.

``realnode.py`` starts this program with ``unshare`` in fresh mount, PID, network, UTS
and IPC namespaces. Everything it changes lives in those namespaces or in the node's own
directory, so the machine's ``/etc``, ``/opt``, ``/var``, ``/run``, sysctls and network
stay as they were; when it exits, the kernel removes the namespaces and with them every
mount, process and network device the node made.

What it does, in order:

1. Mounts: ``/`` becomes a shared subtree of this namespace only (the kubelet wants
   mount propagation); ``/etc`` and ``/var`` are overlays of the machine's directories
   with upper directories in the node's directory; ``/opt`` is the node's own (empty)
   directory; ``/run`` is a fresh tmpfs (``/tmp`` stays shared: the node's directory
   may live under it); ``/var/lib/containerd``,
   ``/var/lib/kubelet`` and ``/var/log`` are plain directories of the node (overlayfs
   cannot hold containerd's overlay snapshots); the kernel settings the kubelet insists
   on are files bind-mounted over their ``/proc/sys`` entries; ``/usr/bin/systemctl`` is
   the node's stand-in (``node_systemctl.py``), which asks this process to restart a unit.
2. The files of ``config/`` (containerd, CNI, kubelet and kube-proxy configuration,
   written by ``realnode.py``) are copied into the node's ``/etc`` from inside the mount
   namespace, never through the overlay's upper directory.
3. It waits until ``realnode.py`` has moved the node's veth into the network namespace,
   then runs the units: containerd, kubelet, kube-proxy. A unit that dies is started
   again after a second, as systemd's ``Restart=always`` would.
4. It serves ``/run/kata-node/control.sock``: ``restart UNIT`` stops the unit's main
   process only (SIGTERM, then SIGKILL after 10 s; shims and pods keep running, like
   systemd's ``KillMode=process``) and starts it again; ``is-active UNIT``; ``fail-next
   UNIT N`` makes the next N restarts of UNIT fail, as a refusing service manager would;
   ``pause-next UNIT SECONDS`` makes the next restart of UNIT wait that long between the
   stop and the start, as a slow unit would, and logs ``UNIT is stopped; starting it in
   SECONDS s (injected pause)`` when the wait begins (``pause-next UNIT 0`` disarms it).
   A restart, once asked for, always runs to its end, even if the caller dies meanwhile
   (as systemd's restart job does).
5. As PID 1 it reaps every orphan (shims, exited containers) and, on SIGTERM, stops the
   units and exits, which ends every process left in the namespace.

Usage (from realnode.py): unshare ... python3 -m tests.cluster.nodeinit NODE_JSON
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTROL_DIR = Path("/run/kata-node")
CONTROL_SOCKET = CONTROL_DIR / "control.sock"
STOP_GRACE = 10.0


def log(message: str) -> None:
    sys.stdout.write(f"[nodeinit {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


def run(*argv: str) -> None:
    # libmount keeps a table under /run/mount: keep it in the node's directory instead,
    # since the first mounts happen before the node's own /run exists.
    env = {**os.environ, "LIBMOUNT_UTAB": os.environ.get("KATA_NODE_UTAB", "/run/mount/utab")}
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")


@dataclass(frozen=True)
class Unit:
    """One supervised program, as a systemd unit would describe it."""

    name: str
    argv: tuple[str, ...]
    log_path: Path
    ready_path: str | None = None  # a socket that must exist before the next unit starts


class Supervisor:
    """Runs the units, restarts them on request or when they die, reaps orphans."""

    def __init__(self, units: list[Unit], env: dict[str, str]) -> None:
        self.units = {u.name: u for u in units}
        self.order = [u.name for u in units]
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarting: set[str] = set()
        self.fail_next: dict[str, int] = {}
        self.pause_next: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def start(self, name: str) -> None:
        unit = self.units[name]
        with unit.log_path.open("ab") as out:
            proc = subprocess.Popen(
                list(unit.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        log(f"started {name} (pid {proc.pid})")
        if unit.ready_path:
            deadline = time.monotonic() + 60
            while not Path(unit.ready_path).exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not create {unit.ready_path}")
                time.sleep(0.1)

    def stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, name: str) -> str:
        """Restart ``name``; return "" on success or systemctl's error text."""
        unit_name = name.removesuffix(".service")
        if unit_name not in self.units:
            return f"Failed to restart {name}: Unit {name} not found."
        with self.lock:
            if self.fail_next.get(unit_name, 0) > 0:
                self.fail_next[unit_name] -= 1
                log(f"refusing a restart of {unit_name} (injected failure)")
                return (
                    f"Job for {unit_name}.service failed because the control process exited "
                    "with error code (injected by the test node)."
                )
            self.restarting.add(unit_name)
            try:
                t0 = time.monotonic()
                self.stop(unit_name)
                pause = self.pause_next.pop(unit_name, 0.0)
                if pause:
                    log(f"{unit_name} is stopped; starting it in {pause:g} s (injected pause)")
                    time.sleep(pause)
                self.start(unit_name)
                log(f"restarted {unit_name} in {time.monotonic() - t0:.2f}s")
            finally:
                self.restarting.discard(unit_name)
        return ""

    def active(self, name: str) -> bool:
        proc = self.procs.get(name.removesuffix(".service"))
        return proc is not None and proc.poll() is None

    def watch(self) -> None:
        """Start again a unit that died on its own (Restart=always, RestartSec=1)."""
        while not self.stopping.wait(1.0):
            for name in self.order:
                with self.lock:
                    proc = self.procs.get(name)
                    if proc is None or name in self.restarting or proc.poll() is None:
                        continue
                    log(f"{name} exited with {proc.returncode}; starting it again")
                    try:
                        self.start(name)
                    except (OSError, RuntimeError) as exc:
                        log(f"could not start {name}: {exc}")

    def serve(self) -> None:
        CONTROL_SOCKET.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(CONTROL_SOCKET))
        server.listen(8)
        while not self.stopping.is_set():
            conn, _ = server.accept()
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            words = conn.makefile("r").readline().split()
            reply = self.command(words)
            conn.sendall((json.dumps(reply) + "\n").encode())

    def command(self, words: list[str]) -> dict[str, Any]:
        if len(words) == 2 and words[0] == "restart":
            error = self.restart(words[1])
            return {"ok": not error, "error": error}
        if len(words) == 2 and words[0] == "is-active":
            return {"ok": self.active(words[1]), "error": ""}
        if len(words) == 3 and words[0] == "fail-next" and words[2].isdigit():
            with self.lock:
                self.fail_next[words[1].removesuffix(".service")] = int(words[2])
            return {"ok": True, "error": ""}
        if len(words) == 3 and words[0] == "pause-next" and _seconds(words[2]) is not None:
            with self.lock:
                self.pause_next[words[1].removesuffix(".service")] = _seconds(words[2]) or 0.0
            return {"ok": True, "error": ""}
        return {"ok": False, "error": f"unknown command {' '.join(words)!r}"}

    def shutdown(self) -> None:
        self.stopping.set()
        for name in reversed(self.order):
            self.stop(name)


def _seconds(word: str) -> float | None:
    try:
        value = float(word)
    except ValueError:
        return None
    return value if 0 <= value <= 60 else None


def reap_orphans(supervisor: Supervisor) -> None:
    """PID 1's duty: collect every orphan (shims, exited containers) that died here.

    The units' own processes are left to their Popen objects, which read their status.
    """
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = None
        if info is None:
            time.sleep(0.2)
            continue
        if info.si_pid in {p.pid for p in supervisor.procs.values()}:
            time.sleep(0.2)
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(info.si_pid, os.WNOHANG)


def setup_mounts(cfg: dict[str, Any]) -> None:
    node = Path(cfg["dir"])
    run("mount", "--make-rshared", "/")
    for target in ("etc", "var"):
        upper, work = node / f"{target}.upper", node / f"{target}.work"
        upper.mkdir(exist_ok=True)
        work.mkdir(exist_ok=True)
        run("mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir=/{target},upperdir={upper},workdir={work}", f"/{target}")  # fmt: skip
    for source, target in (
        ("opt", "/opt"),
        ("containerd", "/var/lib/containerd"),
        ("kubelet", "/var/lib/kubelet"),
        ("log", "/var/log"),
    ):
        (node / source).mkdir(exist_ok=True)
        Path(target).mkdir(parents=True, exist_ok=True)
        run("mount", "--bind", str(node / source), target)
    # /tmp stays the machine's: the node's own directory may well live under it.
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
    for name, value in cfg["sysctls"].items():
        entry = Path("/proc/sys") / name.replace(".", "/")
        if entry.read_text().strip() == str(value):
            continue
        holder = node / "sysctl" / name
        holder.parent.mkdir(parents=True, exist_ok=True)
        holder.write_text(f"{value}\n")
        run("mount", "--bind", str(holder), str(entry))
    run("mount", "--bind", cfg["systemctl"], "/usr/bin/systemctl")
    # What a systemd host has: sd_booted() and the installer's `--restart auto` look here.
    Path("/run/systemd/system").mkdir(parents=True)
    CONTROL_DIR.mkdir(parents=True)


def install_config(cfg: dict[str, Any]) -> None:
    source = Path(cfg["dir"]) / "config"
    for path in sorted(source.rglob("*")):
        target = Path("/") / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            target.chmod(path.stat().st_mode & 0o777)


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    node = Path(cfg["dir"])
    os.environ["KATA_NODE_UTAB"] = str(node / "utab")
    # As PID 1, a signal without a handler is ignored: exit on SIGTERM from the start.
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    try:
        setup_mounts(cfg)
        install_config(cfg)
        run("hostname", cfg["name"])
    except (OSError, RuntimeError) as exc:
        log(f"node setup failed: {exc}")
        return 1
    (node / "mounts.ready").touch()
    log("mounts ready; waiting for the network")
    deadline = time.monotonic() + 60
    while not (node / "net.ready").exists():
        if time.monotonic() > deadline:
            log("the network was not configured within 60s")
            return 1
        time.sleep(0.1)
    units = [
        Unit(u["name"], tuple(u["argv"]), node / "logs" / f"{u['name']}.log", u.get("ready"))
        for u in cfg["units"]
    ]
    sup = Supervisor(units, env=dict(cfg["env"]))

    def on_term(signum: int, frame: object) -> None:
        log("stopping the units")
        sup.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    threading.Thread(target=reap_orphans, args=(sup,), daemon=True).start()
    try:
        for unit in units:
            sup.start(unit.name)
    except (OSError, RuntimeError) as exc:
        log(f"start failed: {exc}")
        sup.shutdown()
        return 1
    threading.Thread(target=sup.watch, daemon=True).start()
    (node / "units.ready").touch()
    sup.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
