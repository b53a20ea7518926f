"""tocsin.otel: one span per send, a child span per receiver, exceptions recorded."""

from __future__ import annotations

import asyncio
import logging

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tocsin
import tocsin.otel
from tocsin._core import hooks as _hooks
from tocsin._core.plans import _table_of


@pytest.fixture(name="exporter")
def _exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    remove = tocsin.otel.instrument(tracer_provider=provider)
    try:
        yield exporter, provider
    finally:
        remove()
        provider.shutdown()


def ok(sender, **kwargs):
    return "ok"


def boom(sender, **kwargs):
    raise ValueError("boom")


def by_name(exporter):
    return {span.name: span for span in exporter.get_finished_spans()}


class TestSpans:
    def test_send_and_receiver_spans(self, exporter):
        """A send span with one child span per receiver, attributes set."""
        exporter, _ = exporter
        sig = tocsin.Signal(name="order_placed")
        sig.connect(ok)
        sig.send(sender="shop")
        spans = by_name(exporter)
        send = spans["send order_placed"]
        [receiver] = [s for n, s in spans.items() if n.endswith("test_otel.ok")]
        assert receiver.parent is not None
        assert receiver.parent.span_id == send.context.span_id
        assert send.parent is None
        assert send.attributes["tocsin.signal"] == "order_placed"
        assert send.attributes["tocsin.sender"] == "'shop'"
        assert send.attributes["tocsin.receivers"] == 1
        assert receiver.attributes["tocsin.receiver"].endswith("test_otel.ok")
        assert send.status.status_code == otel_trace.StatusCode.UNSET

    def test_exception_recorded_on_both(self, exporter):
        """send(): the exception is recorded on the receiver span and the send span."""
        exporter, _ = exporter
        sig = tocsin.Signal(name="s")
        sig.connect(boom)
        with pytest.raises(ValueError, match=r"^boom$"):
            sig.send(sender=None)
        spans = exporter.get_finished_spans()
        assert len(spans) == 2
        for span in spans:
            assert span.status.status_code == otel_trace.StatusCode.ERROR
            [event] = span.events
            assert event.name == "exception"
            assert event.attributes["exception.type"] == "ValueError"
            assert event.attributes["exception.message"] == "boom"

    def test_robust_failure_only_on_receiver(self, exporter, caplog):
        """send_robust(): the failing receiver's span is an error, the send span is not."""
        exporter, _ = exporter
        sig = tocsin.Signal(name="r")
        sig.connect(boom)
        sig.connect(ok)
        with caplog.at_level(logging.ERROR, logger="tocsin"):
            sig.send_robust(sender=None)
        spans = by_name(exporter)
        assert spans["send r"].status.status_code == otel_trace.StatusCode.UNSET
        [failed] = [s for n, s in spans.items() if n.endswith(".boom")]
        assert failed.status.status_code == otel_trace.StatusCode.ERROR
        assert len(spans) == 3

    def test_spans_inside_receivers_are_children(self, exporter):
        """A span a receiver starts, and a nested send, are children of the receiver span."""
        exporter, provider = exporter
        outer, inner = tocsin.Signal(name="outer"), tocsin.Signal(name="inner")
        tracer = provider.get_tracer("app")

        def relay(sender, **kwargs):
            with tracer.start_as_current_span("db query"):
                pass
            inner.send(sender=sender)

        outer.connect(relay)
        inner.connect(ok)
        outer.send(sender=None)
        spans = by_name(exporter)
        [relay_span] = [s for n, s in spans.items() if n.endswith(".relay")]
        assert spans["db query"].parent.span_id == relay_span.context.span_id
        assert spans["send inner"].parent.span_id == relay_span.context.span_id
        assert relay_span.parent.span_id == spans["send outer"].context.span_id
        assert len({s.context.trace_id for s in spans.values()}) == 1

    def test_deferred_run_is_a_child_of_the_send(self, exporter):
        """A via= receiver's later run gets its own span under the send span, errors recorded."""
        exporter, provider = exporter
        sig = tocsin.Signal(name="saved")
        tracer = provider.get_tracer("app")
        pending = []

        def index(sender, **kwargs):
            with tracer.start_as_current_span("index write"):
                pass
            return "indexed"

        sig.connect(index, via=pending.append)
        sig.connect(boom, via=pending.append)
        sig.send(sender=None)
        assert [s.name for s in exporter.get_finished_spans()].count("send saved") == 1
        handoffs = len(exporter.get_finished_spans())
        assert pending[0]() == "indexed"
        with pytest.raises(ValueError, match=r"^boom$"):
            pending[1]()
        spans = exporter.get_finished_spans()[handoffs:]
        send = by_name(exporter)["send saved"]
        deferred = [s for s in spans if s.attributes.get("tocsin.deferred")]
        assert [s.name.rsplit(".", 1)[-1] for s in deferred] == ["index", "boom"]
        for span in deferred:
            assert span.parent.span_id == send.context.span_id
            assert span.context.trace_id == send.context.trace_id
        assert deferred[0].status.status_code == otel_trace.StatusCode.UNSET
        assert deferred[1].status.status_code == otel_trace.StatusCode.ERROR
        [write] = [s for s in spans if s.name == "index write"]
        assert write.parent.span_id == deferred[0].context.span_id

    def test_asend(self, exporter):
        """asend: async and sync receivers get child spans of the send span."""
        exporter, _ = exporter
        sig = tocsin.Signal(name="a")

        async def aok(sender, **kwargs):
            await asyncio.sleep(0)

        sig.connect(aok)
        sig.connect(ok)
        asyncio.run(sig.asend(sender=None))
        spans = by_name(exporter)
        send = spans["send a"]
        assert send.attributes["tocsin.async"] is True
        children = [s for s in spans.values() if s is not send]
        assert len(children) == 2
        assert all(s.parent.span_id == send.context.span_id for s in children)

    def test_uninstrument(self):
        """After the remover runs, no spans and the fast path is back; removing twice is harmless."""
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        sig = tocsin.Signal(name="x")
        sig.connect(ok)
        remove = tocsin.otel.instrument(tracer_provider=provider)
        try:
            tocsin.otel.instrument()()  # another instrumentation, removed at once, leaves this one
            sig.send(sender=None)
            assert len(exporter.get_finished_spans()) == 2
        finally:
            remove()
        assert _hooks.receiver_observer is None
        assert sig._routes is _table_of(sig._routes)  # the fast path
        sig.send(sender=None)
        assert len(exporter.get_finished_spans()) == 2  # no new span
        remove()
        assert _hooks.receiver_observer is None
        provider.shutdown()


def test_instrument_is_a_context_manager():
    """instrument() can also be used with ``with``; nothing is left installed."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sig = tocsin.Signal(name="cm")
    sig.connect(ok)
    with tocsin.otel.instrument(tracer_provider=provider):
        sig.send(sender=None)
    sig.send(sender=None)
    assert len(exporter.get_finished_spans()) == 2
    assert _hooks.receiver_observer is None
    assert sig._routes is _table_of(sig._routes)


def test_missing_opentelemetry_gives_install_hint():
    """Without opentelemetry-api, importing tocsin.otel says what to install."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n    import tocsin.otel\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "tocsin.otel requires opentelemetry-api: pip install 'tocsin[otel]'"
