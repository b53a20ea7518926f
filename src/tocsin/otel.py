"""OpenTelemetry spans for sends and receivers (``pip install 'tocsin[otel]'``).

``instrument()`` starts one span per send, named ``send <signal>``, and a
child span per receiver, named after the receiver's qualified name. Spans a
receiver starts (a database query, an HTTP call) become children of its
span. A receiver's exception is recorded on its span (status ERROR), also
under ``send_robust``; an exception escaping a send marks the send span too.
A ``via=`` receiver's later run (after commit, in a worker...) gets its own
span, a child of the send's span, with ``tocsin.deferred`` set; a
background job run by a worker process too (the send's ``traceparent``
travels in the job row).

Example::

    import tocsin.otel

    tocsin.otel.instrument()  # uses the global tracer provider

Only ``opentelemetry-api`` is needed; configure an SDK as usual.
"""

from __future__ import annotations

from typing import Any

from ._observability import observe as _observe
from ._observability import trace as _trace
from ._observability.observe import Observer, ReceiverEvent, SendEvent

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate as otel_propagate
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover - exercised without the extra
    msg = "tocsin.otel requires opentelemetry-api: pip install 'tocsin[otel]'"
    raise ImportError(msg) from None

__all__ = ["SpanObserver", "instrument"]

_INSTRUMENTATION = "tocsin"


def _sender_attribute(sender: object) -> str:
    return _trace.sender_label(sender)


class SpanObserver(Observer):
    """An observer turning sends and receiver calls into spans.

    Args:
        tracer_provider: where to get the tracer; the global provider when
            ``None``.

    """

    def __init__(self, tracer_provider: otel_trace.TracerProvider | None = None) -> None:
        self.tracer = otel_trace.get_tracer(_INSTRUMENTATION, tracer_provider=tracer_provider)

    def _start(self, name: str, attributes: dict[str, Any]) -> tuple[otel_trace.Span, object]:
        span = self.tracer.start_span(name, kind=otel_trace.SpanKind.INTERNAL, attributes=attributes)
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        return span, token

    def _finish(self, extra: dict[Any, Any], error: BaseException | None) -> None:
        started = extra.pop(self, None)
        if started is None:
            return
        span, token = started
        otel_context.detach(token)
        if error is not None:
            span.record_exception(error)
            span.set_status(
                otel_trace.Status(otel_trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
            )
        span.end()

    def send_started(self, event: SendEvent) -> None:
        """Start the send span and make it current."""
        attributes = {
            "tocsin.signal": event.label,
            "tocsin.sender": _sender_attribute(event.sender),
            "tocsin.robust": event.robust,
            "tocsin.async": event.is_async,
        }
        origin = event.kwargs.get("origin")
        if getattr(type(origin), "__tocsin_origin__", False):  # re-sent by tocsin.broadcast
            attributes["tocsin.origin"] = str(origin)
            attributes["tocsin.origin.bus"] = str(getattr(origin, "bus", ""))
        started = self._start(f"send {event.label}", attributes)
        event.extra[self] = started
        # Kept after the send ends: the parent of its receivers' deferred runs.
        event.extra[(self, "span")] = started[0]

    def send_finished(self, event: SendEvent) -> None:
        """End the send span, recording an exception that escaped."""
        started = event.extra.get(self)
        if started is not None:
            started[0].set_attribute("tocsin.receivers", len(event.receivers))
        self._finish(event.extra, event.error)

    def receiver_started(self, event: ReceiverEvent) -> None:
        """Start a child span for the receiver and make it current."""
        attributes = {"tocsin.signal": event.send.label, "tocsin.receiver": event.name}
        event.extra[self] = self._start(event.name, attributes)

    def receiver_finished(self, event: ReceiverEvent) -> None:
        """End the receiver span, recording its exception."""
        self._finish(event.extra, event.error)

    def deferred_started(self, event: ReceiverEvent) -> None:
        """Start a span for a ``via=`` receiver's later run, a child of its send's span."""
        parent = event.send.extra.get((self, "span"))
        context = None if parent is None else otel_trace.set_span_in_context(parent)
        attributes: dict[str, Any] = {
            "tocsin.signal": event.send.label,
            "tocsin.receiver": event.name,
            "tocsin.deferred": True,
        }
        span = self.tracer.start_span(
            event.name, context=context, kind=otel_trace.SpanKind.INTERNAL, attributes=attributes
        )
        event.extra[self] = span, otel_context.attach(otel_trace.set_span_in_context(span))

    def deferred_finished(self, event: ReceiverEvent) -> None:
        """End the deferred run's span, recording its exception."""
        self._finish(event.extra, event.error)

    def export_send(self, event: SendEvent, carrier: dict[str, str]) -> None:
        """Put the send span's context in *carrier* (W3C ``traceparent``), for a run in another process."""
        span = event.extra.get((self, "span"))
        if span is not None:
            otel_propagate.inject(carrier, context=otel_trace.set_span_in_context(span))

    def import_send(self, event: SendEvent, carrier: dict[str, str]) -> None:
        """Make the remote send's span (from *carrier*) the parent of the deferred run's span."""
        span = otel_trace.get_current_span(otel_propagate.extract(carrier))
        if span.get_span_context().is_valid:
            event.extra[(self, "span")] = span


def instrument(tracer_provider: otel_trace.TracerProvider | None = None) -> Any:
    """Trace every send of every signal with OpenTelemetry spans.

    Returns a function that stops it (idempotent), which is also a context
    manager. Sending costs nothing extra once it is stopped.

    Args:
        tracer_provider: the provider to use; the global one when ``None``.

    .. versionadded:: 0.1

    """
    return _observe.observe(SpanObserver(tracer_provider))
