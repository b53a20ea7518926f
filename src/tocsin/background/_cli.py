"""``tocsin worker``, ``tocsin relay`` and ``tocsin jobs``: run background receivers, inspect and replay jobs.

``tocsin worker --jobs URL --import MODULE [...]`` imports the modules (which
connect receivers ``via=`` a ``later()`` of a ``Jobs`` on that store), then
runs their jobs: in this process with ``--threads N`` (default 1) or
``--asyncio [--concurrency N]``, or in N child processes with
``--processes N`` (each a ``tocsin worker`` of its own; one that dies is
started again). SIGTERM or SIGINT stops it gracefully (see ``Worker``).

``tocsin relay --jobs URL --import MODULE`` hands the committed jobs of a
``Jobs(..., celery=app)`` to Celery (``tocsin.background._celery``).

``tocsin jobs list|failed|retry|purge --jobs URL`` needs no import: it reads
and changes the table directly.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from tocsin._observability.cli import CommandError, import_modules

from ._jobs import Jobs
from ._policy import Later
from ._runner import Allowlist

if TYPE_CHECKING:
    from ._store import Job

__all__ = ["add_commands"]


def _open(url: str, table: str) -> Jobs:
    try:
        return Jobs(url, table=table)
    except (ValueError, ImportError) as exc:
        raise CommandError(str(exc)) from None


def _find_jobs(url: str, table: str) -> Jobs:
    """The app's own ``Jobs`` on *url* (found through its connections), else a new one."""
    probe = _open(url, table)
    from tocsin._core import hooks  # noqa: PLC0415

    for sig in hooks.live_signals():
        if not hooks.has_connections(sig):
            continue
        for connection in sig.connections():
            via = connection.via
            if isinstance(via, Later) and via.jobs.store.identity == probe.store.identity:
                probe.close()
                return via.jobs
    return probe


def _cmd_worker(args: argparse.Namespace, out: TextIO) -> int:
    if args.processes > 1:
        return _supervise(args, out)
    import_modules(args.imports)
    jobs = _find_jobs(args.jobs, args.table)
    if args.lease is not None:
        jobs.lease = args.lease
    if args.poll is not None:
        jobs.poll_interval = args.poll
    allowed = Allowlist(jobs)
    if not allowed.names():
        msg = (
            f"no receiver is connected via a later() of {jobs!r} after importing "
            f"{', '.join(args.imports) or 'nothing'}: --import the modules that connect them"
        )
        raise CommandError(msg)
    concurrency = args.concurrency if args.use_asyncio else args.threads
    worker = jobs.worker(
        concurrency=concurrency, use_asyncio=args.use_asyncio, batch=args.batch, grace=args.grace
    )
    worker.runner.allowlist = allowed

    def stop(signum: int, frame: Any) -> None:
        del signum, frame
        threading.Thread(target=worker.stop, name="tocsin-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    names = ", ".join(f"{receiver} ({sig})" for sig, receiver in allowed.names())
    out.write(f"tocsin worker {worker.id}: {jobs!r}, running {names}\n")
    out.flush()
    worker.run()
    out.write(f"tocsin worker {worker.id}: stopped after {worker.processed} job(s)\n")
    out.flush()
    return 0


def _cmd_relay(args: argparse.Namespace, out: TextIO) -> int:
    import_modules(args.imports)
    jobs = _find_jobs(args.jobs, args.table)
    if jobs.celery is None:
        msg = (
            f"{jobs!r} has no Celery app after importing {', '.join(args.imports) or 'nothing'}: "
            f"--import the module that builds Jobs(..., celery=app) on this store"
        )
        raise CommandError(msg)
    if args.poll is not None:
        jobs.poll_interval = args.poll
    relay = jobs.relay(batch=args.batch)

    def stop(signum: int, frame: Any) -> None:
        del signum, frame
        threading.Thread(target=relay.stop, name="tocsin-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    out.write(f"tocsin relay: {jobs!r} -> Celery task {jobs.celery.name}\n")
    out.flush()
    relay.run()
    out.write(f"tocsin relay: stopped after sending {relay.sent} job(s)\n")
    out.flush()
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "tocsin", "worker", "--jobs", args.jobs, "--table", args.table]
    for module in args.imports:
        argv += ["--import", module]
    if args.use_asyncio:
        argv += ["--asyncio", "--concurrency", str(args.concurrency)]
    else:
        argv += ["--threads", str(args.threads)]
    for option, value in (("--lease", args.lease), ("--poll", args.poll), ("--batch", args.batch)):
        if value is not None:
            argv += [option, str(value)]
    return [*argv, "--grace", str(args.grace)]


def _supervise(args: argparse.Namespace, out: TextIO) -> int:
    """Run --processes N workers as children; start a dead one again; stop all on SIGTERM/SIGINT."""
    argv = _child_argv(args)
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        del signum, frame
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [subprocess.Popen(argv) for _ in range(args.processes)]  # noqa: S603 - our own command
    out.write(f"tocsin worker: {args.processes} processes ({', '.join(str(c.pid) for c in children)})\n")
    out.flush()
    failures = 0
    while not stopping.wait(0.2):
        for index, child in enumerate(children):
            status = child.poll()
            if status is None:
                continue
            if status == 1 and failures >= args.processes:  # a configuration error: do not loop
                stopping.set()
                break
            failures += status != 0
            out.write(f"tocsin worker: process {child.pid} exited with {status}; starting another\n")
            out.flush()
            children[index] = subprocess.Popen(argv)  # noqa: S603 - our own command
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        child.wait()
    return 0


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).isoformat(sep=" ", timespec="seconds")


def _write_jobs(jobs: list[Job], out: TextIO, *, errors: bool) -> None:
    for job in jobs:
        key = f" key={job.key}" if job.key is not None else ""
        out.write(
            f"{job.id}  {job.state:<7}  {job.receiver}  attempts={job.attempts}/{job.max_attempts}{key}  "
            f"created={_when(job.created_at)}  due={_when(job.run_at)}\n"
        )
        if errors and job.last_error:
            out.writelines(f"    {line}\n" for line in job.last_error.rstrip().splitlines())
    out.write(f"{len(jobs)} job(s)\n")


def _cmd_jobs(args: argparse.Namespace, out: TextIO) -> int:
    jobs = _open(args.jobs, args.table)
    try:
        if args.action == "list":
            _write_jobs(jobs.list(args.state, limit=args.limit), out, errors=False)
        elif args.action == "failed":
            _write_jobs(jobs.failed(limit=args.limit), out, errors=True)
        elif args.action == "retry":
            count = jobs.retry(args.ids or None)
            out.write(f"{count} job(s) queued again\n")
        else:
            if not args.ids and not args.all:
                msg = (
                    f"purge deletes jobs for good: name their ids, or pass --all to delete every "
                    f"{args.state} job"
                )
                raise CommandError(msg)
            count = jobs.purge(args.ids or None, state=args.state)
            out.write(f"{count} {args.state} job(s) deleted\n")
    finally:
        jobs.close()
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs", required=True, metavar="URL", help="the job store: sqlite:///jobs.db or a SQLAlchemy URL"
    )
    parser.add_argument("--table", default="tocsin_jobs", help="the job table (default: tocsin_jobs)")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``worker`` and ``jobs`` to the ``tocsin`` command's subparsers."""
    worker = sub.add_parser(
        "worker",
        help="run background receivers (tocsin.background)",
        description="Import MODULEs, then run the jobs of the receivers they connect via a later() of the "
        "store --jobs names. Only those receivers run: a job naming anything else becomes a dead letter.",
    )
    _common(worker)
    worker.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        required=True,
        help="module connecting background receivers (repeatable)",
    )
    how = worker.add_mutually_exclusive_group()
    how.add_argument(
        "--threads", type=int, default=1, metavar="N", help="run N jobs at once in threads (default 1)"
    )
    how.add_argument(
        "--asyncio", dest="use_asyncio", action="store_true", help="run jobs in an asyncio event loop"
    )
    worker.add_argument(
        "--concurrency", type=int, default=10, metavar="N", help="with --asyncio: jobs at once (default 10)"
    )
    worker.add_argument(
        "--processes", type=int, default=1, metavar="N", help="run N worker processes (default 1)"
    )
    worker.add_argument(
        "--batch",
        type=int,
        default=None,
        metavar="N",
        help="jobs claimed per transaction (default: free slots)",
    )
    worker.add_argument(
        "--lease", type=float, default=None, metavar="S", help="lease in seconds (default: the Jobs')"
    )
    worker.add_argument(
        "--poll", type=float, default=None, metavar="S", help="poll interval in seconds (default: the Jobs')"
    )
    worker.add_argument(
        "--grace", type=float, default=30.0, metavar="S", help="seconds running jobs get to finish on stop"
    )
    worker.set_defaults(handler=_cmd_worker)

    relay = sub.add_parser(
        "relay",
        help="hand committed background jobs to Celery (Jobs(..., celery=app))",
        description="Import MODULEs (one builds the Jobs(..., celery=app) on the store --jobs names), then "
        "send its committed jobs to the Celery broker, marking each row only once the broker accepted it.",
    )
    _common(relay)
    relay.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        required=True,
        help="module building the Jobs with its Celery app (repeatable)",
    )
    relay.add_argument(
        "--batch", type=int, default=500, metavar="N", help="rows per transaction (default 500)"
    )
    relay.add_argument(
        "--poll", type=float, default=None, metavar="S", help="poll interval in seconds (default: the Jobs')"
    )
    relay.set_defaults(handler=_cmd_relay)

    jobs = sub.add_parser(
        "jobs",
        help="list, retry and purge background jobs",
        description="Inspect and replay the jobs of a store (no import needed).",
    )
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="queued, running and failed jobs")
    listing.add_argument("--state", choices=("queued", "sent", "running", "failed"), default=None)
    listing.add_argument("--limit", type=int, default=None)
    failed = actions.add_parser("failed", help="dead letters with their last error")
    failed.add_argument("--limit", type=int, default=None)
    retry = actions.add_parser("retry", help="queue dead letters again (all, or the IDs given)")
    retry.add_argument("ids", nargs="*", metavar="ID")
    purge = actions.add_parser("purge", help="delete dead letters (the IDs given, or --all)")
    purge.add_argument("ids", nargs="*", metavar="ID")
    purge.add_argument("--all", action="store_true", help="every job in --state")
    purge.add_argument("--state", choices=("failed", "queued"), default="failed")
    for action in (listing, failed, retry, purge):
        _common(action)
    jobs.set_defaults(handler=_cmd_jobs)
