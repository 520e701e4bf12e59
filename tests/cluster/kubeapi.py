"""Thin JSON helpers over the official client, for the runner and the tests.

The runner and the scenarios read objects as plain dicts (camelCase, as in manifests)
rather than the client's models, and watch with a list-then-watch loop that resumes from
the last resourceVersion and relists on 410 Gone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

LOG = logging.getLogger(__name__)

Obj = dict[str, Any]


def get_json(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
    """Call a client read/list method and return the raw JSON body as a dict."""
    resp = fn(*args, _preload_content=False, **kwargs)
    data: Obj = json.loads(resp.data)
    return data


def _lines(resp: Any) -> Iterator[bytes]:
    buf = b""
    for chunk in resp.stream(amt=65536, decode_content=True):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield line


def list_and_watch(
    fn: Callable[..., Any],
    *,
    on_list: Callable[[list[Obj]], None],
    on_event: Callable[[str, Obj], None],
    stop: threading.Event,
    **selectors: Any,
) -> None:
    """List, hand the items to ``on_list``, then stream events until ``stop`` is set."""
    while not stop.is_set():
        try:
            data = get_json(fn, **selectors)
        except Exception as exc:  # noqa: BLE001 - keep watching through API restarts
            LOG.warning("list failed (%s); retrying", exc)
            stop.wait(1.0)
            continue
        rv = data["metadata"]["resourceVersion"]
        on_list(data.get("items") or [])
        while not stop.is_set():
            try:
                resp = fn(
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=60,
                    _preload_content=False,
                    _request_timeout=(5, 90),
                    **selectors,
                )
                gone = False
                for line in _lines(resp):
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        gone = obj.get("code") == 410
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        on_event(event["type"], obj)
                    if stop.is_set():
                        return
                if gone:
                    break
            except Exception as exc:  # noqa: BLE001 - transient: resume from rv
                LOG.debug("watch interrupted (%s); resuming", exc)
                time.sleep(0.5)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def now_micro() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"
