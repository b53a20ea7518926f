"""The Celery app of the Celery tests (test_jobs_celery.py): ``celery -A _celery_app worker``.

Both the test process (which sends and relays) and the worker subprocesses
build it from the environment: ``TOCSIN_CELERY_BROKER`` (the test's
redis-server), ``TOCSIN_CELERY_JOBS`` (the job store's URL),
``TOCSIN_CELERY_QUEUE`` (a queue of this test only) and
``TOCSIN_CELERY_LEASE``; ``TOCSIN_CELERY_POSTRUN=1`` makes workers report the
end of each task (``postrun <task id> <state>``); ``TOCSIN_CELERY_SETTINGS``
(JSON) updates the app's settings; ``TOCSIN_CELERY_KILL=before|after`` makes a
``tocsin relay`` process SIGKILL itself right before, or right after, the
broker accepted its first message; ``TOCSIN_CELERY_OBSERVE=1`` makes workers
report what observers see of each job's run (:func:`observe_runs`). The
receivers are those of ``_jobs_app``.
Short visibility timeouts make a SIGKILLed worker's message come back in
seconds (production keeps Celery's hour: see docs/background.md).
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from celery import Celery

import _jobs_app
from tocsin.background import Jobs


def make(broker: str, jobs_url: Any, queue: str, lease: float = 30.0, **options: Any) -> tuple[Celery, Jobs]:
    app = Celery("tocsin_test", broker=broker, set_as_current=False)
    app.conf.update(
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": 3,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if os.environ.get("TOCSIN_CELERY_SETTINGS"):  # a worker started with settings under test
        app.conf.update(json.loads(os.environ["TOCSIN_CELERY_SETTINGS"]))
    jobs = Jobs(jobs_url, celery=app, celery_queue=queue, lease=lease, **options)
    return app, jobs


def observe_runs() -> None:
    """Report, as a worker's observers see them, each job's run: ``span``, ``deferred`` and ``trace`` lines.

    * ``span {json}``: every span ``tocsin.otel`` ends, from an OpenTelemetry SDK
      provider of this process (name, trace and span ids, parent span id, attributes);
    * ``deferred {json}``: an ``Observer``'s ``deferred_started``/``deferred_finished``
      (receiver, the stand-in send's signal label and ``remote`` carrier, error);
    * ``trace {message}``: what ``tocsin.trace()`` logs.
    """
    import logging
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    import tocsin
    import tocsin.otel

    class Exporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for span in spans:
                context, parent = span.get_span_context(), span.parent
                line = {
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": None if parent is None else f"{parent.span_id:016x}",
                    "attributes": dict(span.attributes or {}),
                }
                _jobs_app.report(f"span {json.dumps(line)}")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Exporter()))
    tocsin.otel.instrument(tracer_provider=provider)

    class Deferreds(tocsin.Observer):
        def deferred_started(self, event: tocsin.ReceiverEvent) -> None:
            self._report("started", event)

        def deferred_finished(self, event: tocsin.ReceiverEvent) -> None:
            self._report("finished", event)

        def _report(self, when: str, event: tocsin.ReceiverEvent) -> None:
            line = {
                "when": when,
                "receiver": event.name,
                "signal": event.send.label,
                "remote": event.send.remote,
                "error": None if event.error is None else repr(event.error),
            }
            _jobs_app.report(f"deferred {json.dumps(line)}")

    tocsin.observe(Deferreds())

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            _jobs_app.report(f"trace {record.getMessage().strip()}")

    log = logging.getLogger("tocsin_test.trace")
    log.addHandler(Lines())
    log.propagate = False
    tracing = tocsin.trace(log=log, level=logging.WARNING, record=False)
    tracing.__enter__()
    _kept.append(tracing)  # for the process's life: a collected generator would stop tracing


_kept: list[Any] = []


if os.environ.get("TOCSIN_CELERY_JOBS"):  # in a Celery worker process
    app, jobs = make(
        os.environ["TOCSIN_CELERY_BROKER"],
        os.environ["TOCSIN_CELERY_JOBS"],
        os.environ["TOCSIN_CELERY_QUEUE"],
        float(os.environ.get("TOCSIN_CELERY_LEASE", "30")),
    )
    _jobs_app.connect(jobs)
    if os.environ.get("TOCSIN_CELERY_POSTRUN"):  # a worker reports each task's end: "postrun ID STATE"
        from celery import signals

        def _postrun(task_id: str, state: str, **kwargs: Any) -> None:
            _jobs_app.report(f"postrun {task_id} {state}")

        signals.task_postrun.connect(_postrun, weak=False)
    if os.environ.get("TOCSIN_CELERY_OBSERVE"):
        observe_runs()
    if os.environ.get("TOCSIN_CELERY_KILL"):  # tocsin relay: SIGKILL itself around the first publish
        from celery import signals

        def _kill(**kwargs: Any) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        hook = (
            signals.before_task_publish
            if os.environ["TOCSIN_CELERY_KILL"] == "before"
            else signals.after_task_publish
        )
        hook.connect(_kill, weak=False)
