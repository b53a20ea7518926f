"""The optional C accelerator (tocsin._core._speedups) and its pure-Python twin.

The whole suite runs in both modes (``make pytest-all``: compiled, then
``TOCSIN_NO_EXTENSIONS=1``); these tests aim at what only the compiled loop
could get wrong: argument shapes it hands back to the Python method, the
keyword-names and id caches, the buffers beyond their inline sizes, bound
methods, receivers dying mid-send, ``send_robust``'s exception handling,
subclasses, and which mode is active. Each holds in both modes.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import inspect
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import pytest

import tocsin
from tocsin._core import speedups as _speedups
from tocsin.exceptions import SendArgumentsError

PURE = bool(os.environ.get("TOCSIN_NO_EXTENSIONS"))
BUILT = importlib.util.find_spec("tocsin._core._speedups") is not None
SUPPORTED = sys.implementation.name == "cpython" and not sysconfig.get_config_var("Py_GIL_DISABLED")


class Sender:
    pass


class Boom(Exception):
    pass


def echo(signal: tocsin.Signal, sender: object, **kwargs: Any) -> tuple[Any, ...]:
    return (signal, sender, kwargs)


def module_level(**kwargs: Any) -> None:
    pass


class Handler:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def on(self, **kwargs: Any) -> str:
        self.calls.append(kwargs)
        return "method"


def _kept(run: Any, n: int, watched: tuple[object, ...]) -> int:
    """Bytes still allocated after ``run(n)`` (measured after a warm-up ``run(1_000)`` already made).

    Also checks that the reference counts of *watched* are back where they were.
    """
    gc.collect()  # pure Python: a failure's traceback holds send_robust's frame, a cycle
    before = [sys.getrefcount(obj) for obj in watched]
    tracemalloc.start()
    try:
        run(1_000)
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        run(n)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    gc.collect()
    assert [sys.getrefcount(obj) for obj in watched] == before
    return grown


class TestMode:
    def test_active_mode(self) -> None:
        """``tocsin.__speedups__`` says whether the compiled methods run, and they are installed then."""
        assert tocsin.__speedups__ is (not PURE and BUILT and SUPPORTED)
        assert tocsin.__speedups__ is _speedups.ACTIVE
        for name in ("send", "send_robust", "connect", "disconnect"):
            compiled = type(tocsin.Signal.__dict__[name]).__name__ == "FastSend"
            assert compiled is tocsin.__speedups__, name

    @pytest.mark.skipif(not SUPPORTED, reason="the extension is built for CPython with the GIL only")
    def test_built_where_a_compiler_is(self) -> None:
        """On CI with a C compiler, the install compiled the extension (no silent fallback)."""
        if not os.environ.get("CI") or not (shutil.which("cc") or shutil.which("gcc")):
            pytest.skip("checked on CI, where a C compiler is installed")
        assert BUILT

    def test_installs_without_a_c_compiler(self, tmp_path: Path) -> None:
        """A checkout installs where no C compiler runs (CC=false): a notice, no error, pure Python."""
        root = Path(__file__).resolve().parents[1]
        if not (root / "setup.py").is_file():
            pytest.skip("needs the source checkout")
        source = tmp_path / "source"
        source.mkdir()
        for name in ("pyproject.toml", "setup.py", "README.md"):
            shutil.copy2(root / name, source / name)
        shutil.copytree(
            root / "src", source / "src", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        env["CC"] = "false"  # the compiler command fails, as a missing compiler would
        installed = tmp_path / "site"
        build = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-v",
                "--no-deps",
                "--target",
                str(installed),
                str(source),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        assert "the C accelerator was not built" in build.stdout + build.stderr
        assert not list(installed.rglob("_speedups*.so"))
        code = (
            "import tocsin; sig = tocsin.Signal()\n"
            "def on(sender, **kw): return sender\n"
            "sig.connect(on); print(tocsin.__speedups__, sig.send('s'))"
        )
        run = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, "PYTHONPATH": str(installed)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert run.stdout.startswith("False [(<function on at ")
        assert run.stdout.rstrip().endswith(">, 's')]")

    @pytest.mark.skipif(not SUPPORTED, reason="the extension is built for CPython with the GIL only")
    def test_sdist_compiles_the_extension(self, tmp_path: Path) -> None:
        """The sdist holds every file the C extension needs: installed from it, the extension is compiled."""
        root = Path(__file__).resolve().parents[1]
        if not (root / "setup.py").is_file():
            pytest.skip("needs the source checkout")
        if not (shutil.which("cc") or shutil.which("gcc")):
            pytest.skip("no C compiler here")
        source = tmp_path / "source"
        source.mkdir()
        for name in ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in"):
            shutil.copy2(root / name, source / name)
        shutil.copytree(
            root / "src", source / "src", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__")
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOCSIN_")}
        dist = tmp_path / "dist"
        subprocess.run(  # as `make dist` builds it: with no extension in the build's own wheel
            [sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(source)],
            env={**env, "TOCSIN_NO_EXTENSIONS": "1"},
            capture_output=True,
            check=True,
        )
        (sdist,) = dist.glob("tocsin-*.tar.gz")
        installed = tmp_path / "site"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(installed), str(sdist)],
            env={**env, "TOCSIN_REQUIRE_EXTENSIONS": "1"},  # a failed compile is an error
            capture_output=True,
            check=True,
        )
        run = subprocess.run(
            [sys.executable, "-c", "import tocsin; print(tocsin.__speedups__)"],
            env={**env, "PYTHONPATH": str(installed)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert run.stdout.split() == ["True"]

    def test_environment_variable_forces_pure_python(self) -> None:
        """``TOCSIN_NO_EXTENSIONS=1`` runs pure Python; an empty value does not disable anything."""
        code = "import tocsin; print(tocsin.__speedups__, type(tocsin.Signal.send).__name__)"
        env = {**os.environ, "TOCSIN_NO_EXTENSIONS": "1"}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == ["False", "function"]
        env["TOCSIN_NO_EXTENSIONS"] = ""
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        expected = ["True", "FastSend"] if BUILT and SUPPORTED else ["False", "function"]
        assert out.stdout.split() == expected

    def test_introspection_shows_the_python_method(self) -> None:
        """Name, docstring and signature are the documented ones in both modes."""
        for name in ("send", "send_robust"):
            method = getattr(tocsin.Signal, name)
            assert method.__name__ == name
            assert method.__qualname__ == f"Signal.{name}"
            assert "receiver" in method.__doc__
            assert str(inspect.signature(method)) == (
                "(self, sender: 'Any' = <missing>, **named: 'Any') -> 'list[tuple[Any, Any]]'"
            )
            assert inspect.signature(getattr(tocsin.Signal(), name)).parameters.keys() == {"sender", "named"}
        assert str(inspect.signature(tocsin.Signal.connect)) == (
            "(self: 'Signal', receiver: 'Callable[..., Any] | None' = None, sender: 'object' = None, "
            "weak: 'bool' = True, dispatch_uid: 'Hashable | None' = None, *, priority: 'int' = 0, "
            "via: 'DeliveryPolicy | None' = None, on_error: 'ErrorHandler | None' = None) -> 'Any'"
        )
        assert str(inspect.signature(tocsin.Signal().disconnect)) == (
            "(receiver: 'Callable[..., Any] | None' = None, sender: 'object' = None, "
            "dispatch_uid: 'Hashable | None' = None) -> 'bool'"
        )
        for name in ("connect", "disconnect"):
            method = getattr(tocsin.Signal, name)
            assert (method.__name__, method.__qualname__) == (name, f"Signal.{name}")
            assert "Thread-safe" in method.__doc__


class TestArguments:
    @pytest.mark.parametrize("method", ["send", "send_robust"])
    def test_call_shapes(self, method: str) -> None:
        """Positional or keyword sender, bound or through the class: the same call."""
        sig = tocsin.Signal()
        sig.connect(echo)
        sender = Sender()
        expected = [(echo, (sig, sender, {"a": 1}))]
        assert getattr(sig, method)(sender, a=1) == expected
        assert getattr(sig, method)(sender=sender, a=1) == expected
        assert getattr(sig, method)(a=1, sender=sender) == expected
        assert getattr(tocsin.Signal, method)(sig, sender, a=1) == expected
        assert getattr(tocsin.Signal, method)(sig, a=1, sender=sender) == expected
        bound = getattr(sig, method)
        assert bound(sender, a=1) == expected
        assert getattr(sig, method)(None) == [(echo, (sig, None, {}))]

    @pytest.mark.parametrize("method", ["send", "send_robust"])
    def test_bad_shapes_raise_as_python_does(self, method: str) -> None:
        """Argument errors are Python's own, raised before any receiver runs."""
        sig = tocsin.Signal()
        calls: list[object] = []
        sig.connect(lambda **kw: calls.append(kw), weak=False)
        send = getattr(sig, method)
        with pytest.raises(TypeError, match=rf"Signal\.{method}\(\) takes from 1 to 2 positional arguments"):
            send(Sender, 2)
        with pytest.raises(
            TypeError, match=rf"Signal\.{method}\(\) got multiple values for argument 'sender'"
        ):
            send(Sender, sender=Sender)
        with pytest.raises(SendArgumentsError, match="needs a sender"):
            send(a=1)
        with pytest.raises(SendArgumentsError, match="got signal=1 among its named arguments"):
            send(Sender, signal=1)
        with pytest.raises(SendArgumentsError, match="got signal=1 among its named arguments"):
            send(signal=1, sender=Sender)
        with pytest.raises(TypeError):
            getattr(tocsin.Signal, method)()
        assert calls == []

    def test_many_named_arguments(self) -> None:
        """More named arguments than the loop's inline buffer holds, in their order."""
        sig = tocsin.Signal()
        sig.connect(echo)
        named = {f"arg{i}": i for i in range(40)}
        ((_, (_, sender, got)),) = sig.send(Sender, **named)
        assert sender is Sender
        assert list(got.items()) == list(named.items())
        ((_, (_, sender, got)),) = sig.send(**named, sender=Sender)
        assert list(got.items()) == list(named.items())

    def test_many_call_sites(self) -> None:
        """More keyword-name combinations than the cache holds, interleaved and nested."""
        sig = tocsin.Signal()
        inner = tocsin.Signal()
        inner.connect(echo)
        seen: list[dict[str, Any]] = []

        def outer(**kwargs: Any) -> None:
            seen.append(kwargs)
            name = f"nested{len(seen)}"
            # A send from inside a send, under call sites the outer send's cache entry may lose.
            exec(f"inner.send(Sender, {name}=1)", {"inner": inner, "Sender": Sender})

        sig.connect(outer)
        for i in range(200):
            exec(f"sig.send(Sender, k{i}=1, sender2={i})", {"sig": sig, "Sender": Sender})
        assert [sorted(kw) for kw in seen] == [
            sorted(["signal", "sender", f"k{i}", "sender2"]) for i in range(200)
        ]
        assert [kw["sender2"] for kw in seen] == list(range(200))


class TestCaches:
    def test_entry_evicted_while_its_send_runs(self) -> None:
        """User code run by a send before its receivers (a metaclass here) may evict its cache entry.

        The send must hold the receivers' keyword names it took from the cache:
        freed and reused, they would name other keywords (or none at all).
        """
        armed: list[bool] = []
        reused: list[tuple[str, ...]] = []
        # Enough call sites that every entry of the cache (64, by address) goes, whatever the addresses.
        call_sites = [compile(f"other.send(None, evict{i}=1)", "<evict>", "exec") for i in range(2000)]

        class Meta(type):
            def __getattribute__(cls, name: str) -> Any:
                if name == "_routes" and armed:
                    armed.clear()
                    other = tocsin.Signal()
                    other.connect(lambda **kw: None, weak=False)
                    for code in call_sites:  # each with keyword names of its own, all alive
                        exec(code, {"other": other})
                    # Reuse freed 4-tuples, such as an evicted ("signal", "sender", "value", "extra"):
                    # as many as CPython's free list of 4-tuples may hold.
                    reused.extend((f"a{i}", f"b{i}", f"c{i}", f"d{i}") for i in range(2000))
                return super().__getattribute__(name)

        class Checked(tocsin.Signal, metaclass=Meta):
            pass

        class Other(tocsin.Signal):
            pass

        sig = Checked()
        got: list[list[str]] = []

        def receiver(**kwargs: Any) -> None:
            got.append(sorted(kwargs))

        sig.connect(receiver)
        sig.send(None, value=1, extra=2)  # the slow path publishes the table
        Other().send(None)  # the accelerator now remembers Other's slots, not Checked's: it checks again
        armed.append(True)
        sig.send(None, value=1, extra=2)
        if tocsin.__speedups__:  # pure Python reads the slot through the class, not the metaclass
            assert not armed, "the metaclass did not run during the send"
        assert got == [["extra", "sender", "signal", "value"]] * 2


class TestReceivers:
    def test_every_kind_of_receiver(self) -> None:
        """Weak and strong functions, weak and strong bound methods, callable objects."""
        sig = tocsin.Signal()
        weak_handler, strong_handler = Handler(), Handler()

        class Callable_:
            def __call__(self, **kwargs: Any) -> str:
                return "object"

        obj = Callable_()
        sig.connect(echo)
        sig.connect(weak_handler.on)
        sig.connect(strong_handler.on, weak=False)
        sig.connect(obj)
        sig.connect(dict, weak=False)  # a C callable taking keywords
        responses = sig.send(Sender, a=1)
        assert [r for r, _ in responses] == [echo, weak_handler.on, strong_handler.on, obj, dict]
        assert [v for _, v in responses][1:] == [
            "method",
            "method",
            "object",
            {"signal": sig, "sender": Sender, "a": 1},
        ]
        assert weak_handler.calls == [{"signal": sig, "sender": Sender, "a": 1}]

    def test_many_receivers(self) -> None:
        """More receivers than the loop's inline buffer of responses, in order."""
        sig = tocsin.Signal()
        handlers = [Handler() for _ in range(100)]
        for handler in handlers:
            sig.connect(handler.on)
        for method in (sig.send, sig.send_robust):
            responses = method(Sender)
            assert [r for r, _ in responses] == [h.on for h in handlers]

    def test_receiver_dying_mid_send_is_skipped(self) -> None:
        """A weakly held receiver collected by an earlier receiver is not called."""
        sig = tocsin.Signal()
        victims = [Handler(), Handler()]
        calls: list[str] = []

        def killer(**kwargs: Any) -> None:
            calls.append("killer")
            victims.pop()

        sig.connect(killer)
        sig.connect(victims[0].on)
        sig.connect(victims[1].on)
        responses = sig.send(Sender)
        assert [r for r, _ in responses] == [killer, victims[0].on]
        assert calls == ["killer"]

    def test_disconnect_during_send_applies_next_time(self) -> None:
        """A send calls the receivers connected when it started."""
        sig = tocsin.Signal()
        calls: list[str] = []

        def first(**kwargs: Any) -> None:
            calls.append("first")
            sig.disconnect(second)

        def second(**kwargs: Any) -> None:
            calls.append("second")

        sig.connect(first)
        sig.connect(second)
        sig.send(Sender)
        sig.send(Sender)
        assert calls == ["first", "second", "first"]

    def test_exception_propagates_unchanged(self) -> None:
        """send() lets the first exception through, the same object, and stops there."""
        sig = tocsin.Signal()
        error = Boom("once")
        later: list[object] = []

        def fails(**kwargs: Any) -> None:
            raise error

        sig.connect(fails)
        sig.connect(lambda **kw: later.append(kw), weak=False)
        for _ in range(2):  # the slow path (publishing the table), then the loop
            with pytest.raises(Boom) as caught:
                sig.send(Sender)
            assert caught.value is error
        assert later == []


class TestRobust:
    def test_exception_becomes_response_and_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.ERROR, logger="tocsin")
        sig = tocsin.Signal()

        def fails(**kwargs: Any) -> None:
            raise Boom("bad")

        sig.connect(fails)
        sig.connect(echo)
        for _ in range(2):  # the first send rebuilds the table (slow path), the second takes the loop
            (first, second) = sig.send_robust(Sender)
            assert first[0] is fails
            assert isinstance(first[1], Boom)
            assert first[1].__traceback__ is not None
            assert second == (echo, (sig, Sender, {}))
        name = "TestRobust.test_exception_becomes_response_and_is_logged.<locals>.fails"
        assert [r.getMessage() for r in caplog.records] == [
            f"Error calling {name} in Signal.send_robust() (bad)"
        ] * 2
        assert all(r.exc_info is not None and r.exc_info[1] is not None for r in caplog.records)

    def test_base_exceptions_propagate(self) -> None:
        sig = tocsin.Signal()

        def interrupts(**kwargs: Any) -> None:
            raise KeyboardInterrupt

        sig.connect(interrupts)
        for _ in range(2):  # the slow path, then the loop
            with pytest.raises(KeyboardInterrupt):
                sig.send_robust(None)

    def test_handled_exception_while_logging(self) -> None:
        """While the failure is logged it is the exception being handled, as in Python's except block."""
        seen: list[object] = []

        class Logging(tocsin.Signal):
            def _log_failure(self, receiver: object, exc: Exception, method: str = "send_robust") -> None:
                seen.append(sys.exc_info()[1])
                raise RuntimeError("logging failed")

        sig = Logging()
        error = Boom("bad")

        def fails(**kwargs: Any) -> None:
            raise error

        sig.connect(fails)
        for _ in range(2):  # the slow path, then the loop
            with pytest.raises(RuntimeError, match="logging failed") as caught:
                sig.send_robust(None)
            assert caught.value.__context__ is error
        assert seen == [error, error]
        assert sys.exc_info() == (None, None, None)


class TestSubclasses:
    def test_super_send(self) -> None:
        class Counting(tocsin.Signal):
            sends = 0

            def send(self, sender: Any = None, **named: Any) -> list[tuple[Any, Any]]:
                Counting.sends += 1
                return super().send(sender, **named)

        sig = Counting()
        sig.connect(echo)
        assert sig.send(Sender, a=1) == [(echo, (sig, Sender, {"a": 1}))]
        assert sig.send(Sender, a=1) == [(echo, (sig, Sender, {"a": 1}))]
        assert Counting.sends == 2

    def test_subclass_hiding_the_routes_slot(self) -> None:
        """A subclass that puts another ``_routes`` over the slot is read through it."""
        reads: list[int] = []

        class Odd(tocsin.Signal):
            @property
            def _routes(self) -> Any:
                reads.append(1)
                return self._hidden

            @_routes.setter
            def _routes(self, value: Any) -> None:
                self._hidden = value

        sig = Odd()
        sig.connect(echo)
        sig.send(Sender)
        reads.clear()
        assert sig.send(Sender, a=1) == [(echo, (sig, Sender, {"a": 1}))]
        assert reads

    def test_typed_signal(self) -> None:
        def spec(*, a: int) -> None: ...

        sig = tocsin.TypedSignal(spec, validate=False)
        sig.connect(echo)
        for _ in range(2):
            assert sig.send(Sender, a=1) == [(echo, (sig, Sender, {"a": 1}))]


class TestLeaks:
    """10**5 sends and connect/disconnect cycles keep no reference and no memory, in either mode."""

    N = 100_000

    def test_sends_keep_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(logging.getLogger("tocsin"), "disabled", True)  # send_robust logs each failure
        sig = tocsin.Signal()

        class Quiet:
            def on(self, **kwargs: Any) -> int:
                return 1

        quiet = Quiet()

        def plain(**kwargs: Any) -> int:
            return 2

        def fails(**kwargs: Any) -> None:
            raise Boom

        strong = Quiet()
        sig.connect(plain)
        sig.connect(quiet.on)
        sig.connect(strong.on, weak=False)
        sig.connect(fails, sender=Sender)
        value, other = object(), object()
        watched = (sig, Sender, value, other, plain, quiet, strong, fails)

        def run(n: int) -> None:  # n sends, of four kinds
            for _ in range(n // 4):
                sig.send(None, value=value)
                sig.send(sender=None, value=value, other=other)
                sig.send_robust(Sender, value=value)
                with contextlib.suppress(Boom):
                    sig.send(Sender, value=value)

        run(1_000)  # warm up: tables published, caches filled
        assert _kept(run, self.N, watched) < 10_000

    def test_connect_disconnect_cycles_keep_nothing(self) -> None:
        sig = tocsin.Signal()
        plain = module_level  # not nested: connect()'s common path

        class Quiet:
            def on(self, **kwargs: Any) -> None:
                pass

        quiet, sender = Quiet(), Sender()
        watched = (sig, plain, quiet, sender)

        def run(n: int) -> None:  # n cycles of three kinds; a send (a rebuild) every 99 cycles
            for i in range(n // 3):
                sig.connect(plain)  # the common paths (compiled when active)
                sig.disconnect(plain)
                sig.connect(plain, sender=sender)
                sig.disconnect(plain, sender=sender)
                sig.connect(quiet.on, sender=sender)  # the general path
                if i % 33 == 0:
                    sig.send(sender)
                sig.disconnect(quiet.on, sender=sender)

        run(1_000)
        assert _kept(run, self.N, watched) < 10_000
        assert sig._records == {}
        assert weakref.getweakrefcount(sender) == 0


class TestCommonConnect:
    """connect()/disconnect() of a module-level function: compiled when active, the same either way."""

    def test_call_shapes(self) -> None:
        """Every way of passing the arguments reaches the same connection."""
        sig = tocsin.Signal()
        instance = Sender()
        bound_connect, bound_disconnect = sig.connect, sig.disconnect
        options: dict[str, Any] = {"sender": None}  # a call with **: CALL_FUNCTION_EX
        shapes = [
            (lambda: sig.connect(module_level), lambda: sig.disconnect(module_level)),
            (lambda: sig.connect(receiver=module_level), lambda: sig.disconnect(receiver=module_level)),
            (
                lambda: tocsin.Signal.connect(sig, module_level),
                lambda: tocsin.Signal.disconnect(sig, module_level),
            ),
            (lambda: bound_connect(module_level), lambda: bound_disconnect(module_level)),
            (
                lambda: sig.connect(module_level, None, True, None),
                lambda: sig.disconnect(module_level, None, None),
            ),
            (lambda: sig.connect(module_level, weak=True, priority=0), lambda: sig.disconnect(module_level)),
            (
                lambda: sig.connect(*(module_level,), **options),
                lambda: sig.disconnect(*(module_level,)),
            ),
        ]
        for connect, disconnect in shapes:
            assert connect() is module_level
            assert [r for r, _ in sig.send(instance)] == [module_level]
            assert disconnect() is True
            assert sig.send(instance) == []
        for connect, disconnect in [
            (lambda: sig.connect(module_level, instance), lambda: sig.disconnect(module_level, instance)),
            (
                lambda: sig.connect(sender=instance, receiver=module_level),
                lambda: sig.disconnect(sender=instance, receiver=module_level),
            ),
        ]:
            assert connect() is module_level
            assert [r for r, _ in sig.send(instance)] == [module_level]
            assert sig.send(Sender()) == []
            assert disconnect() is True
        assert sig._records == {}

    def test_bad_shapes_raise_as_python_does(self) -> None:
        """Argument errors are Python's own, and nothing is connected or disconnected."""
        sig = tocsin.Signal()
        with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'sendr'"):
            sig.connect(module_level, sendr=None)
        with pytest.raises(TypeError, match=r"got multiple values for argument 'receiver'"):
            sig.connect(module_level, receiver=module_level)
        with pytest.raises(TypeError, match="at most 4 positional arguments"):
            sig.connect(module_level, None, True, None, 0)
        with pytest.raises(TypeError):
            tocsin.Signal.connect()
        assert sig._records == {}
        sig.connect(module_level)
        with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'weak'"):
            sig.disconnect(module_level, weak=True)
        with pytest.raises(TypeError, match=r"got multiple values for argument 'sender'"):
            sig.disconnect(module_level, None, sender=None)
        with pytest.raises(TypeError, match="takes from 1 to 4 positional arguments"):
            sig.disconnect(module_level, None, None, None)
        assert len(sig._records) == 1

    def test_decorators_and_options(self) -> None:
        """The decorator forms and every option reach the Python path and work."""
        sig = tocsin.Signal()
        errors: list[BaseException] = []

        @sig.connect
        def bare(**kwargs: Any) -> str:
            return "bare"

        @sig.connect(sender=Sender, priority=5, on_error=lambda exc, context: errors.append(exc))
        def ranked(**kwargs: Any) -> str:
            raise Boom

        assert [r for r, _ in sig.send(None)] == [bare]
        with pytest.raises(Boom):
            sig.send(Sender)
        assert len(errors) == 1
        sig.connect(module_level, on_error=lambda exc, context: None)  # stored by the Python path
        assert sig._records[id(module_level)][0]() is module_level
        assert sig.disconnect(module_level)
        assert sig.disconnect(ranked, Sender)
        assert sig.disconnect(bare)
        assert sig._records == {}

    def test_waits_for_a_held_lock(self) -> None:
        """A connect or disconnect never runs its section while another thread holds the lock."""
        sig = tocsin.Signal()
        done: list[object] = []
        for call in (lambda: sig.connect(module_level), lambda: sig.disconnect(module_level)):
            sig._lock.acquire()
            try:
                worker = threading.Thread(target=lambda call=call: done.append(call()))
                worker.start()
                worker.join(0.3)
                assert worker.is_alive(), "ran while the lock was held"
                assert done == []
            finally:
                sig._lock.release()
            worker.join(10)
            assert not worker.is_alive()
            assert len(done) == 1
            done.clear()
        assert sig._records == {}

    def test_threads_mixing_paths(self) -> None:
        """Compiled and Python-path changes and sends from many threads, switching often, agree at the end.

        Module-level functions (made by exec: not nested) take the common
        path, run without the lock when it is free; the others take the lock
        in Python (priority=, bound methods, dispatch_uid=); sends rebuild the
        routes under the lock meanwhile.
        """
        sig = tocsin.Signal()
        n = 40
        namespace: dict[str, Any] = {}
        exec("\n".join(f"def f{i}(**kwargs): return {i}" for i in range(4 * n)), namespace)
        plain = [namespace[f"f{i}"] for i in range(4 * n)]
        handlers = [Handler() for _ in range(n)]
        senders = [Sender() for _ in range(4)]
        errors: list[BaseException] = []
        start = threading.Barrier(6)

        def guarded(work: Any) -> Any:
            def run() -> None:
                try:
                    start.wait()
                    work()
                except BaseException as exc:
                    errors.append(exc)

            return run

        def plain_any(part: list[Any]) -> Any:
            def work() -> None:
                for _ in range(30):
                    for f in part:
                        sig.connect(f)
                    for f in part[1::2]:
                        assert sig.disconnect(f)
                    for f in part[1::2]:
                        sig.connect(f)
                    for f in part:
                        assert sig.disconnect(f)
                for f in part[::2]:
                    sig.connect(f)  # left connected

            return work

        def plain_senders(part: list[Any]) -> Any:
            def work() -> None:
                for _ in range(30):
                    for i, f in enumerate(part):
                        sig.connect(f, sender=senders[i % 4])
                    for i, f in enumerate(part):
                        assert sig.disconnect(f, sender=senders[i % 4])
                for f in part[::2]:
                    sig.connect(f, sender=senders[0])

            return work

        def general() -> None:
            for _ in range(30):
                for h in handlers:
                    sig.connect(h.on, priority=1)
                for h in handlers:
                    assert sig.disconnect(h.on)
                sig.connect(plain[0], dispatch_uid="uid")
                assert sig.disconnect(dispatch_uid="uid")
            sig.connect(handlers[0].on)

        def sends() -> None:
            for _ in range(300):
                for receiver, _ in sig.send(senders[0]):
                    assert receiver is not None

        threads = [
            threading.Thread(target=guarded(work))
            for work in (
                plain_any(plain[:n]),
                plain_any(plain[n : 2 * n]),
                plain_senders(plain[2 * n : 3 * n]),
                plain_senders(plain[3 * n :]),
                general,
                sends,
            )
        ]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
        finally:
            sys.setswitchinterval(interval)
        assert errors == []
        expected_any = plain[: 2 * n : 2]
        expected_first_sender = plain[2 * n :: 2]

        # Each thread's last connections, in whatever order the threads made them.
        def names(receivers: list[Any]) -> list[str]:
            return sorted(r.__name__ for r in receivers)  # f0, f1, ... and "on" (handlers[0].on)

        assert names([r for r, _ in sig.send(senders[0])]) == names(
            [*expected_any, *expected_first_sender, handlers[0].on]
        )
        assert names([r for r, _ in sig.send(senders[1])]) == names([*expected_any, handlers[0].on])
        assert [r for r, _ in sig.send(senders[1]) if r.__name__ == "on"] == [handlers[0].on]
        assert len(sig._records) == len(expected_any) + len(expected_first_sender) + 1

    def test_watchers_duplicates_and_senders(self) -> None:
        events: list[tuple[str, Any, Any]] = []

        def on_connect(sender: Any, **kwargs: Any) -> None:
            events.append(("connected", kwargs["receiver"], kwargs["for_sender"]))

        def on_disconnect(sender: Any, **kwargs: Any) -> None:
            events.append(("disconnected", kwargs["receiver"], kwargs["for_sender"]))

        tocsin.receiver_connected.connect(on_connect, weak=False)
        tocsin.receiver_disconnected.connect(on_disconnect, weak=False)
        try:
            sig = tocsin.Signal()
            instance = Sender()
            for sender in (None, instance, Sender):
                assert sig.connect(module_level, sender) is module_level
                assert sig.connect(module_level, sender=sender) is module_level  # a duplicate
            assert [r for r, _ in sig.send(None)] == [module_level]
            assert [r for r, _ in sig.send(instance)] == [module_level, module_level]
            assert [r for r, _ in sig.send(Sender)] == [module_level, module_level]
            for sender in (None, instance, Sender):
                assert sig.disconnect(module_level, sender) is True
                assert sig.disconnect(module_level, sender=sender) is False
            assert sig.send(instance) == []
        finally:
            tocsin.receiver_connected.disconnect(on_connect)
            tocsin.receiver_disconnected.disconnect(on_disconnect)
        expected = [
            (kind, module_level, s)
            for kind in ("connected", "disconnected")
            for s in (None, instance, Sender)
        ]
        assert events == expected

    def test_sweeps_what_died(self) -> None:
        """A receiver collected earlier is swept by the next connect, and its sender's death drops it."""
        sig = tocsin.Signal()
        victim = Handler()
        sig.connect(victim.on)
        del victim
        gc.collect()
        sig.connect(module_level)
        assert len(sig._records) == 1
        sender = Sender()
        sig.connect(module_level, sender=sender)
        assert len(sig._records) == 2
        del sender
        gc.collect()
        assert len(sig._records) == 1
        assert sig.disconnect(module_level)
        assert sig._records == {}

    def test_other_options_take_the_python_path(self) -> None:
        sig = tocsin.Signal()
        sig.connect(module_level, weak=False)
        sig.connect(module_level, dispatch_uid="uid")
        sig.connect(module_level, sender="by value")
        assert len(sig._records) == 3
        with pytest.raises(TypeError, match="at most 4 positional arguments"):
            sig.connect(module_level, None, True, None, 5)
        assert sig.disconnect(module_level)
        assert sig.disconnect(dispatch_uid="uid")
        assert sig.disconnect(module_level, sender="by value")
        assert sig._records == {}
