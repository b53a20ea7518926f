"""The pytest plugin: ``tocsin.testing`` as fixtures and a marker.

Registered through the ``pytest11`` entry point, so installing tocsin is
enough. It adds:

* ``@pytest.mark.mute_signals(*signals_or_receivers)``: the test (and its
  fixtures) run with these muted, as with ``tocsin.testing.mute``. Markers
  on classes and modules apply too, and add up.
* fixture ``sent_signals``: a ``tocsin.testing.Capture`` of every signal
  sent during the test.
* fixture ``mute_signals``: a function muting its arguments until the test
  ends.

Example::

    @pytest.mark.mute_signals(post_save)
    def test_bulk_import(sent_signals):
        import_orders(rows)
        sent_signals.assert_sent(signal=import_finished)
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from .testing import Capture, capture, mute

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["mute_signals", "pytest_configure", "sent_signals"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``mute_signals`` marker (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "mute_signals(*signals_or_receivers): run the test with these tocsin signals or "
        "receivers muted (tocsin.testing.mute).",
    )


@pytest.fixture(autouse=True)
def _tocsin_mute_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    markers = list(request.node.iter_markers("mute_signals"))
    if not markers:
        yield
        return
    targets: list[Any] = [target for marker in markers for target in marker.args]
    if not targets:  # a bare @pytest.mark.mute_signals: muting nothing would pass silently
        msg = (
            "@pytest.mark.mute_signals needs the signals or receivers to mute, for example "
            "@pytest.mark.mute_signals(post_save); it got none."
        )
        raise TypeError(msg)
    with mute(*targets):
        yield


@pytest.fixture
def sent_signals() -> Iterator[Capture]:
    """Record every signal sent during the test (``tocsin.testing.capture()``)."""
    with capture() as sent:
        yield sent


@pytest.fixture
def mute_signals() -> Iterator[Callable[..., None]]:
    """Return a function muting signals or receivers until the test ends."""
    with contextlib.ExitStack() as stack:

        def mute_until_teardown(*targets: Any) -> None:
            stack.enter_context(mute(*targets))

        yield mute_until_teardown
