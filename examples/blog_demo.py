"""The signals blog, end to end: ``python examples/blog_demo.py`` (``make demo`` runs it).

Starts the FastAPI app (uvicorn, in this process) and a background worker,
drives a realistic scenario over HTTP (register, publish, comment, like,
view, delete), prints what the signals did, and stops. With ``REDIS_URL``
set, a second app process shares the cache invalidations over Redis.

Follow one run through every signal: ``tocsin trace -- python examples/blog_demo.py``.
``--json`` prints the raw stats instead (the tests read them).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
workdir = Path(tempfile.mkdtemp(prefix="tocsin-blog-"))
own_database = "BLOG_DATABASE" not in os.environ  # a database of this run only: removed at the end
os.environ.setdefault("BLOG_DATABASE", str(workdir / "blog.db"))
if os.environ.get("REDIS_URL"):
    os.environ.setdefault("BLOG_BUS", os.environ["REDIS_URL"])

import uvicorn  # noqa: E402 - after the environment that configures the blog
from blog import scenario  # noqa: E402
from blog.app import app  # noqa: E402
from blog.jobs import jobs  # noqa: E402


class _Labelled(logging.Filter):
    """The failing receiver is the demo's intentional failure: one labelled line, no traceback."""

    def filter(self, record):
        message = record.getMessage()
        if "ping_partner_feed" in message:
            record.msg, record.args = f"[intentional failure] {message}", ()
            record.exc_info = record.exc_text = None
        return True


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url, process=None, timeout=20.0):
    import httpx  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            msg = f"the app process at {url} exited with {process.returncode}"
            raise RuntimeError(msg)
        try:
            httpx.get(f"{url}/stats", timeout=1)
        except httpx.TransportError:
            time.sleep(0.05)
        else:
            return
    msg = f"the app at {url} did not answer within {timeout} s"
    raise RuntimeError(msg)


def main():
    quiet = "--json" in sys.argv
    handler = logging.StreamHandler(sys.stderr if quiet else sys.stdout)
    handler.addFilter(_Labelled())
    handler.setFormatter(logging.Formatter("  log: %(message)s"))
    logging.getLogger("tocsin").addHandler(handler)

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, name="uvicorn")
    serving.start()
    urls, others = [f"http://127.0.0.1:{port}"], []
    try:
        _wait_until_up(urls[0])
        if os.environ.get("BLOG_BUS", "memory://").startswith("redis"):
            other_port = _free_port()
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            }
            argv = [
                sys.executable,
                "-m",
                "uvicorn",
                "blog.app:app",
                "--port",
                str(other_port),
                "--log-level",
                "warning",
            ]
            others.append(subprocess.Popen(argv, cwd=HERE, env=env))
            urls.append(f"http://127.0.0.1:{other_port}")
            _wait_until_up(urls[1], others[0])
        with jobs.start_worker(concurrency=2):
            if not quiet:
                print(f"blog app at {' and '.join(urls)}, a worker with 2 threads")
            started = time.perf_counter()
            stats = scenario.run(urls)
            stats["seconds"] = round(time.perf_counter() - started, 2)
    finally:
        server.should_exit = True
        serving.join(10)
        for process in others:
            process.terminate()
            process.wait(10)
        jobs.store.close()
        if own_database:
            shutil.rmtree(workdir, ignore_errors=True)
    if quiet:
        print(json.dumps(stats))
    else:
        print(scenario.summary(stats))
        print(f"\nscenario took {stats['seconds']} s; stopped cleanly")


if __name__ == "__main__":
    main()
