#!/usr/bin/python3
"""The real node's ``systemctl``: asks the node's PID 1 (``nodeinit.py``) to act on a unit.

It is bind-mounted over ``/usr/bin/systemctl`` inside the node's mount namespace only, so
the installer's unchanged ``nsenter --target 1 ... systemctl restart containerd`` reaches
the node's own service manager. It knows the verbs the project uses: ``restart UNIT``
and ``is-active UNIT``; anything else exits 1 with systemctl's wording. Standard library
only: it runs on the machine's /usr/bin/python3 inside the node.
"""

import json
import socket
import sys

SOCKET = "/run/kata-node/control.sock"


def main(argv: list[str]) -> int:
    words = [w for w in argv if not w.startswith("-")]
    if len(words) != 2 or words[0] not in {"restart", "is-active"}:
        sys.stderr.write(f"systemctl (kata-deploy test node): unsupported: {' '.join(argv)}\n")
        return 1
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(120)
            conn.connect(SOCKET)
            conn.sendall((" ".join(words) + "\n").encode())
            reply = json.loads(conn.makefile("r").readline())
    except OSError as exc:
        sys.stderr.write(f"System has not been booted with systemd as init system (PID 1): {exc}\n")
        return 1
    if words[0] == "is-active":
        sys.stdout.write("active\n" if reply["ok"] else "inactive\n")
        return 0 if reply["ok"] else 3
    if not reply["ok"]:
        sys.stderr.write(reply["error"] + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
