"""The real nodes' way to the control plane: a TCP relay from the bridge to 127.0.0.1.

The apiserver, the registry and everything else of the local cluster listen on
127.0.0.1 only. Real nodes live in their own network namespaces, behind the cluster's
bridge, so this relay listens on the bridge's host address for each given port and
forwards every connection to the same port on 127.0.0.1. The ``kubernetes`` Service's
EndpointSlice points here, so kube-proxy's rules lead pods to the API.

Usage: python3 -m tests.cluster.gateway --listen 10.213.N.1 --port 6443 --port 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


def _handler(port: int):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def serve(listen: str, ports: list[int]) -> None:
    servers = [await asyncio.start_server(_handler(p), listen, p) for p in ports]
    sys.stdout.write(f"gateway: relaying {listen}:{ports} to 127.0.0.1\n")
    sys.stdout.flush()
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.cluster.gateway")
    parser.add_argument("--listen", required=True, help="address to listen on (the bridge's)")
    parser.add_argument("--port", type=int, action="append", required=True, help="port to relay")
    ns = parser.parse_args(argv)
    asyncio.run(serve(ns.listen, ns.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
