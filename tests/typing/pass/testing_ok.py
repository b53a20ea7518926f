"""Uses of tocsin.testing that type checkers must accept: decorated objects keep their types."""

from __future__ import annotations

import unittest
from typing import Any

import tocsin
from tocsin.testing import Finding, ReceiverCall, SentSignal, capture, check, mute

sig = tocsin.Signal(name="imported")


def handler(sender: object, **kwargs: Any) -> None:
    pass


@mute(sig)
def job(n: int) -> str:
    return str(n)


result: str = job(1)


@mute(sig, handler)
async def async_job() -> int:
    return 1


@mute(sig)
class ImportTests(unittest.TestCase):
    def test_import(self) -> None:
        assert sig.send(None) == []


@mute(sig)
class TestPlain:
    def test_import(self) -> None:
        pass


case: type[unittest.TestCase] = ImportTests
plain: TestPlain = TestPlain()

with mute(sig), capture(sig) as sent:
    sig.send(None)
first: SentSignal = sent.sent[0]
calls: tuple[ReceiverCall, ...] = first.calls
finished: bool = calls[0].finished if calls else True
culprit: Any = first.raised_by


findings: list[Finding] = check("tocsin")
first_fix: str = findings[0].fix if findings else ""
