"""Typed signals: runtime behaviour, and mypy accepting/rejecting tests/typing/."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import types
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest

import tocsin
from tocsin.exceptions import SendArgumentsError, UncheckedAnnotationWarning

TYPING = Path(__file__).parent / "typing"


class Order:
    pass


class HasSize(Protocol):  # not @runtime_checkable: isinstance() refuses it
    def size(self) -> int: ...


@tocsin.typed_signal
def order_placed(*, order: Order, total: Decimal, note: str = "") -> None:
    """Sent after an order is placed."""


class TestRuntime:
    def test_is_a_plain_signal(self) -> None:
        """A typed signal is a Signal with the spec's name, doc and module, and the same send()."""
        assert isinstance(order_placed, tocsin.Signal)
        assert order_placed.name == "order_placed"
        assert order_placed.doc == "Sent after an order is placed."
        assert order_placed.module == __name__
        assert type(order_placed).send is tocsin.Signal.send
        assert order_placed._interceptors == ()

    def test_send_and_receive(self) -> None:
        """Receivers get the named arguments as usual."""
        got: list[Any] = []

        def email(sender: object, *, order: Order, total: Decimal, **kwargs: Any) -> None:
            got.append((sender, total))

        order_placed.connect(email)
        try:
            order_placed.send(Order, order=Order(), total=Decimal(5))
        finally:
            order_placed.disconnect(email)
        assert got == [(Order, Decimal(5))]

    def test_no_validation_by_default(self) -> None:
        """Without validate=True, wrong arguments are not checked at run time: receivers get them."""
        got: list[dict[str, Any]] = []

        def record(sender: object, **kwargs: Any) -> None:
            got.append(kwargs)

        order_placed.connect(record)
        try:
            responses = order_placed.send(Order, whatever=1)  # type: ignore[call-arg]
        finally:
            order_placed.disconnect(record)
        assert responses == [(record, None)]
        assert got == [{"signal": order_placed, "whatever": 1}]

    def test_validation(self) -> None:
        """validate=True checks names and plain-class types before any receiver runs."""

        def spec(*, order: Order, total: Decimal, note: str = "") -> None: ...

        sig = tocsin.TypedSignal(spec, name="checked", validate=True)
        ran: list[Any] = []
        sig.connect(lambda sender, **kw: ran.append(kw))
        sig.send(None, order=Order(), total=Decimal(1))
        mismatch = r"^checked\.send\(\) arguments do not match its spec \(order, total, note\): "
        with pytest.raises(SendArgumentsError, match=mismatch + r"missing a required argument: 'total'\.$"):
            sig.send(None, order=Order())  # type: ignore[call-arg]
        with pytest.raises(SendArgumentsError, match=r"unexpected keyword argument 'ordr'"):
            sig.send(None, order=Order(), total=Decimal(1), ordr=1)  # type: ignore[call-arg]
        with pytest.raises(
            SendArgumentsError,
            match=r"^checked\.send\(\) argument 'total' must be Decimal \(got 5 that is a int\)\.$",
        ):
            sig.send(None, order=Order(), total=5)  # type: ignore[arg-type]
        assert len(ran) == 1

    def test_validation_async(self) -> None:
        """Validation also covers asend."""
        import asyncio

        def spec(*, n: int) -> None: ...

        sig = tocsin.TypedSignal(spec, validate=True)
        with pytest.raises(SendArgumentsError):
            asyncio.run(sig.asend(None, n="x"))  # type: ignore[arg-type]


SIGNALS_MODULE = '''
from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import tocsin

if TYPE_CHECKING:
    from {models} import Customer, Order


def order_placed_spec(*, order: Order, customer: Customer, total: Decimal, note: str | None = None) -> None:
    """Sent after an order is placed."""


order_placed = tocsin.TypedSignal(order_placed_spec, name="order_placed", validate=True)
'''


LATE_MODULE = """
from __future__ import annotations

import tocsin


def spec(*, order: Order, customer: Customer) -> None: ...


order_placed = tocsin.TypedSignal(spec, name="order_placed", validate=True)


class Order: ...


from late_models import Customer  # noqa: E402 - at the bottom, as import cycles are often broken
"""


def _import_file(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestValidationAnnotations:
    """validate=True checks every annotation that resolves and names the ones that do not."""

    @pytest.fixture(name="signals")
    def _signals(self, tmp_path: Path, request: pytest.FixtureRequest) -> types.ModuleType:
        """A real module whose spec names classes imported only under `if TYPE_CHECKING:`."""
        suffix = re.sub(r"\W", "_", request.node.name)
        models = f"shop_models_{suffix}"
        (tmp_path / f"{models}.py").write_text("class Order: ...\nclass Customer: ...\n")
        path = tmp_path / f"shop_signals_{suffix}.py"
        path.write_text(SIGNALS_MODULE.format(models=models))
        return _import_file(path, f"shop_signals_{suffix}")

    def test_type_checking_imports(self, signals: types.ModuleType) -> None:
        """The other annotations are still checked; a warning at the spec names the unresolved ones, once."""
        sig = signals.order_placed
        ran: list[Any] = []
        sig.connect(lambda sender, **kw: ran.append(kw))
        with (
            pytest.warns(UncheckedAnnotationWarning) as warned,
            pytest.raises(
                SendArgumentsError,
                match=r"^order_placed\.send\(\) argument 'total' must be Decimal \(got 5 that is a int\)\.$",
            ),
        ):
            sig.send(None, order="any order", customer=None, total=5)
        (warning,) = warned
        assert str(warning.message) == (
            "order_placed validates its sends (validate=True) but cannot check the types of "
            "'order' (annotation 'Order': name 'Order' is not defined) and "
            "'customer' (annotation 'Customer': name 'Customer' is not defined). "
            "A name imported only under `if TYPE_CHECKING:`, or defined inside a function, "
            "cannot be resolved at run time. "
            "The argument names and the other annotations are still checked. "
            "Import these names at run time to check them too, "
            "or filter tocsin.exceptions.UncheckedAnnotationWarning to accept this."
        )
        assert warning.filename == signals.__file__
        assert warning.lineno == signals.order_placed_spec.__code__.co_firstlineno
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once: the later sends do not warn again
            with pytest.raises(
                SendArgumentsError, match=r"argument 'note' must be str \| None \(got 5 that is"
            ):
                sig.send(None, order=1, customer=2, total=Decimal(1), note=5)
            sig.send(None, order=1, customer=2, total=Decimal(1), note=None)  # order, customer: unchecked
            sig.send(None, order=1, customer=2, total=Decimal(1), note="gift")
        assert len(ran) == 2

    def test_resolved_at_first_send(self, tmp_path: Path) -> None:
        """Names defined or imported after the spec count: annotations resolve at the first send."""
        (tmp_path / "late_models.py").write_text("class Customer: ...\n")
        (tmp_path / "late_signals.py").write_text(LATE_MODULE)
        sys.path.insert(0, str(tmp_path))
        try:
            signals = _import_file(tmp_path / "late_signals.py", "late_signals")
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("late_models", None)
        sig = signals.order_placed
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing unresolved, so no warning
            sig.send(None, order=signals.Order(), customer=signals.Customer())
            with pytest.raises(SendArgumentsError, match=r"argument 'order' must be Order \(got 'o' that is"):
                sig.send(None, order="o", customer=signals.Customer())
            with pytest.raises(
                SendArgumentsError, match=r"argument 'customer' must be Customer \(got 1 that"
            ):
                sig.send(None, order=signals.Order(), customer=1)

    def test_annotations_isinstance_cannot_check(self) -> None:
        """Any, generics, Literal and non-runtime protocols are skipped, not a TypeError from every send."""

        def spec(*, anything: Any, items: list[int], mode: Literal["a"], sized: HasSize, n: int) -> None: ...

        sig = tocsin.TypedSignal(spec, name="loose", validate=True)
        sig.send(None, anything=object(), items=["x"], mode="b", sized=3, n=1)  # type: ignore[arg-type, list-item]
        with pytest.raises(SendArgumentsError, match=r"argument 'n' must be int"):
            sig.send(None, anything=1, items=[], mode="a", sized=3, n="1")  # type: ignore[arg-type]

    def test_numeric_promotions(self) -> None:
        """An int is accepted for float and complex, as type checkers accept it (PEP 484)."""

        def spec(*, ratio: float, z: complex, maybe: float | None) -> None: ...

        sig = tocsin.TypedSignal(spec, name="numbers", validate=True)
        sig.send(None, ratio=1, z=2, maybe=3)
        sig.send(None, ratio=1.5, z=2.5, maybe=None)
        with pytest.raises(
            SendArgumentsError, match=r"argument 'ratio' must be float \(got '1' that is a str\)"
        ):
            sig.send(None, ratio="1", z=1, maybe=None)  # type: ignore[arg-type]
        with pytest.raises(
            SendArgumentsError, match=r"'maybe' must be float \| None \(got 'x' that is a str"
        ):
            sig.send(None, ratio=1, z=1, maybe="x")  # type: ignore[arg-type]


def _expected_errors(path: Path) -> dict[int, str]:
    expected = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.search(r"# E: (.+)$", line)
        if match:
            expected[number] = match.group(1).strip()
    return expected


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_type_checker(tmp_path: Path) -> None:
    """mypy accepts every file in typing/pass and reports exactly the marked lines in typing/fail."""
    files = sorted(TYPING.glob("pass/*.py")) + sorted(TYPING.glob("fail/*.py"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--show-error-codes",
            "--config-file=",
            f"--cache-dir={tmp_path}",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    errors: dict[tuple[str, int], list[str]] = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(.+?):(\d+): error: (.+)$", line)
        if match:
            errors.setdefault((Path(match.group(1)).name, int(match.group(2))), []).append(match.group(3))
    assert result.returncode in (0, 1), result.stdout + result.stderr
    unexpected = dict(errors)
    for path in files:
        if path.parent.name == "pass":
            continue
        expected = _expected_errors(path)
        assert expected, f"{path} marks no expected error"
        for number, text in expected.items():
            found = unexpected.pop((path.name, number), [])
            assert any(text in message for message in found), (
                f"{path.name}:{number}: want {text!r}, got {found}"
            )
    assert unexpected == {}, result.stdout
    assert result.returncode == 1


def _pyright() -> str:
    """The pyright executable; skips the test if it cannot run here, or fails it under CI.

    The PyPI package runs the npm one on Node.js (a ``node`` on PATH, or the
    ``pyright[nodejs]`` extra). CI (``CI=true``) must run this check, so there
    a missing pyright or Node.js fails the test instead of skipping it.
    """
    exe = Path(sys.executable).with_name("pyright")
    if not exe.exists():
        reason = f"pyright is not installed next to {sys.executable} (it is in the test dependency group)"
    else:
        try:
            probe = subprocess.run(
                [str(exe), "--version"], capture_output=True, text=True, timeout=300, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"{exe} --version failed: {exc}"
        else:
            if probe.returncode == 0:
                return str(exe)
            # The first line names a crash, the last one an exception.
            lines = (probe.stderr or probe.stdout).strip().splitlines() or [f"exit {probe.returncode}"]
            reason = f"{exe} --version failed: {' ... '.join(dict.fromkeys([lines[0], lines[-1]]))}"
        reason += "; pyright needs Node.js: install it (Debian: apt-get install nodejs)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and pyright cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def test_pyright_agrees() -> None:
    """pyright also accepts typing/pass and flags exactly the marked lines of typing/fail."""
    exe = _pyright()
    files = sorted(TYPING.glob("pass/*.py")) + sorted(TYPING.glob("fail/*.py"))
    result = subprocess.run(
        [exe, "--outputjson", "--pythonpath", sys.executable, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(result.stdout)
    flagged = {
        (Path(d["file"]).name, d["range"]["start"]["line"] + 1)
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    }
    expected = {
        (path.name, number)
        for path in files
        if path.parent.name == "fail"
        for number in _expected_errors(path)
    }
    assert expected, "typing/fail marks no expected error"
    assert flagged == expected
