"""The tocsin command, end to end on examples/shop: main(argv) and real subprocesses."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tocsin._cli import main
from tocsin._core import hooks as _hooks

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _in_examples(monkeypatch):
    """Run from examples/ (as the docs do), restoring sys.path and sys.argv after."""
    monkeypatch.chdir(EXAMPLES)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    # runpy warns when running a module that is already imported (only the
    # test process imports it twice; the real command runs once).
    monkeypatch.delitem(sys.modules, "shop.checkout", raising=False)


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


class TestInspect:
    def test_text(self, capsys):
        """Every signal with its receivers and all their connection details."""
        status, out, err = run(capsys, "inspect", "shop")
        assert (status, err) == (0, "")
        lines = out.splitlines()
        assert lines[0] == "shop.signals.order_placed  (3 receivers)"
        assert lines[1] == "    An order was placed; sends order=."
        assert lines[2] == "  - shop.stock.reserve_stock  shop/stock.py:10"
        assert lines[3] == (
            "      sender=shop.models.Order weak priority=10 dispatch_uid=- delivery=immediate on_error=-"
        )
        assert lines[4:6] == [
            "  - shop.mail.send_receipt  shop/mail.py:21",
            (
                "      sender=shop.models.Order weak priority=0 dispatch_uid='order-receipt' "
                "delivery=immediate on_error=shop.mail.note_bounce"
            ),
        ]
        assert "      sender=any strong priority=-10 dispatch_uid=- delivery=immediate on_error=-" in lines
        assert (
            "      sender=shop.models.Payment weak priority=0 dispatch_uid=- delivery=shop.mail.after_commit "
            "on_error=-" in lines
        )
        assert "  - shop.mail.Buyers.on_stock_low  shop/mail.py:40" in lines
        assert [line for line in lines if not line.startswith(" ")] == [
            "shop.signals.order_placed  (3 receivers)",
            "shop.signals.payment_failed  (2 receivers)",
            "shop.signals.stock_low  (2 receivers)",
        ]

    def test_json(self, capsys):
        """--json: the same facts, machine-readable."""
        status, out, _ = run(capsys, "inspect", "shop", "--json")
        assert status == 0
        data = json.loads(out)
        names = [s["name"] for s in data["signals"]]
        assert names == ["shop.signals.order_placed", "shop.signals.payment_failed", "shop.signals.stock_low"]
        first = data["signals"][0]["receivers"][0]
        assert first == {
            "receiver": "shop.stock.reserve_stock",
            "where": "shop/stock.py:10",
            "sender": "shop.models.Order",
            "weak": True,
            "priority": 10,
            "dispatch_uid": None,
            "delivery": "immediate",
            "async": False,
            "on_error": None,
        }
        receipt = data["signals"][0]["receivers"][1]
        assert (receipt["receiver"], receipt["on_error"]) == (
            "shop.mail.send_receipt",
            "shop.mail.note_bounce",
        )

    def test_path_and_submodule(self, capsys):
        """A submodule (given as a path) lists the signals it binds or connects to."""
        status, out, _ = run(capsys, "inspect", "shop/stock.py")
        assert status == 0
        # stock.py defines nothing: it connects to order_placed and imports stock_low to send it.
        assert [line for line in out.splitlines() if not line.startswith(" ")] == [
            "shop.signals.order_placed  (3 receivers)",
            "shop.signals.stock_low  (2 receivers)",
        ]

    def test_reexported_signals_under_their_public_name(self, capsys):
        """A public module re-exporting a private module's signals lists them, under its name."""
        status, out, _ = run(capsys, "inspect", "tocsin.asgi")
        assert status == 0
        assert [line for line in out.splitlines() if not line.startswith(" ")] == [
            "tocsin.asgi.got_request_exception  (0 receivers)",
            "tocsin.asgi.request_finished  (0 receivers)",
            "tocsin.asgi.request_started  (0 receivers)",
        ]


class TestGraph:
    def test_mermaid(self, capsys):
        """A mermaid flowchart: senders --> signals --> receivers."""
        status, out, _ = run(capsys, "graph", "shop")
        assert status == 0
        lines = out.splitlines()
        assert lines[0] == "flowchart LR"
        assert '    snd0["shop.models.Order"]' in lines
        assert '    sig0{{"shop.signals.order_placed"}}' in lines
        assert '    rcv0(["shop.stock.reserve_stock"])' in lines
        assert "    snd0 --> sig0" in lines
        assert '    sig0 -->|"sender=Order"| rcv0' in lines
        assert '    rcv1(["shop.mail.send_receipt"])' in lines
        assert '    sig0 -->|"sender=Order on_error=shop.mail.note_bounce"| rcv1' in lines

    def test_dot(self, capsys):
        """--format dot: a Graphviz digraph."""
        status, out, _ = run(capsys, "graph", "shop", "--format", "dot")
        assert status == 0
        assert out.startswith("digraph tocsin {\n    rankdir=LR;\n")
        assert '    sig0 -> rcv0 [label="sender=Order"];' in out
        assert '    sig0 -> rcv1 [label="sender=Order on_error=shop.mail.note_bounce"];' in out
        assert out.endswith("}\n")


HANDLERS_APP = """\
import asyncio

import tocsin

saved = tocsin.Signal(name="saved")


class Reporter:
    def failed(self, exc, context):
        pass

    def __call__(self, exc, context):
        pass


reporter = Reporter()


def log_failure(exc, context):
    pass


@tocsin.receiver(saved, on_error=log_failure, priority=4)
def by_function(sender, **kwargs):
    pass


@tocsin.receiver(saved, on_error=reporter.failed, priority=3)
def by_method(sender, **kwargs):
    pass


@tocsin.receiver(saved, on_error=reporter, priority=2)
async def by_object(sender, **kwargs):
    await asyncio.sleep(0)


gone = Reporter()


@tocsin.receiver(saved, on_error=gone.failed, priority=1)  # held weakly: goes with gone
def by_collected_method(sender, **kwargs):
    pass


del gone


@tocsin.receiver(saved, sender=Reporter, on_error=log_failure)
def for_one_sender(sender, **kwargs):
    pass
"""


class TestErrorHandlers:
    """The on_error= handler of each connection, as inspect and graph show it."""

    @pytest.fixture(autouse=True)
    def _handlers_app(self, tmp_path, monkeypatch):
        """handlers_app: one signal, a receiver per kind of handler; unloaded after the test."""
        (tmp_path / "handlers_app.py").write_text(HANDLERS_APP)
        monkeypatch.chdir(tmp_path)
        yield
        sys.modules.pop("handlers_app", None)
        gc.collect()  # its signal too (module namespaces are cycles), or the next import lists two

    def test_text(self, capsys):
        """on_error=<qualified name> (or -) after the delivery policy; a collected handler is -."""
        status, out, err = run(capsys, "inspect", "handlers_app")
        assert (status, err) == (0, "")
        options = [line.strip() for line in out.splitlines() if line.startswith("      sender=")]
        assert options == [
            "sender=any weak priority=4 dispatch_uid=- delivery=immediate on_error=handlers_app.log_failure",
            (
                "sender=any weak priority=3 dispatch_uid=- delivery=immediate "
                "on_error=handlers_app.Reporter.failed"
            ),
            (
                "sender=any weak priority=2 dispatch_uid=- delivery=immediate "
                "on_error=handlers_app.Reporter instance async"
            ),
            # gone.failed was held weakly (a bound method beside a weak receiver), and its
            # instance is gone: no handler is called any more.
            "sender=any weak priority=1 dispatch_uid=- delivery=immediate on_error=-",
            (
                "sender=handlers_app.Reporter weak priority=0 dispatch_uid=- delivery=immediate "
                "on_error=handlers_app.log_failure"
            ),
        ]

    def test_json(self, capsys):
        """--json: "on_error" is the handler's qualified name, or null."""
        status, out, _ = run(capsys, "inspect", "handlers_app", "--json")
        assert status == 0
        [signal] = json.loads(out)["signals"]
        assert [(r["receiver"], r["on_error"]) for r in signal["receivers"]] == [
            ("handlers_app.by_function", "handlers_app.log_failure"),
            ("handlers_app.by_method", "handlers_app.Reporter.failed"),
            ("handlers_app.by_object", "handlers_app.Reporter instance"),
            ("handlers_app.by_collected_method", None),
            ("handlers_app.for_one_sender", "handlers_app.log_failure"),
        ]

    @pytest.mark.parametrize(
        ("fmt", "edges"),
        [
            (
                "mermaid",
                [
                    '    sig0 -->|"on_error=handlers_app.log_failure"| rcv0',
                    "    sig0 --> rcv3",  # the collected handler: a plain arrow
                    '    sig0 -->|"sender=Reporter on_error=handlers_app.log_failure"| rcv4',
                ],
            ),
            (
                "dot",
                [
                    '    sig0 -> rcv0 [label="on_error=handlers_app.log_failure"];',
                    "    sig0 -> rcv3;",
                    '    sig0 -> rcv4 [label="sender=Reporter on_error=handlers_app.log_failure"];',
                ],
            ),
        ],
    )
    def test_graph_labels(self, capsys, fmt, edges):
        """The arrow to a receiver names its handler, after the sender filter if any."""
        status, out, _ = run(capsys, "graph", "handlers_app", "--format", fmt)
        assert status == 0
        lines = out.splitlines()
        assert [line for line in edges if line in lines] == edges


class TestTrace:
    def test_script(self, capsys, tmp_path):
        """A script runs with tracing on; the timeline shows durations and failures."""
        timeline = tmp_path / "timeline.txt"
        status, out, _ = run(capsys, "trace", "-o", str(timeline), "--", "python", "shop_demo.py")
        assert status == 0
        assert "order 99 rejected: bad address 'nobody'" in out  # the program's own output
        lines = timeline.read_text().splitlines()
        assert lines[0] == "tocsin trace: shop_demo.py exited with status 0"
        assert lines[1].startswith("5 sends, 12 receiver calls, 1 deferred run, 1 failure, ")
        assert " ms  send order_placed sender=shop.models.Order (" in lines[2]
        assert any(" ms    send stock_low sender='stock' (" in line for line in lines)
        assert any(
            line.endswith("shop.mail.send_receipt  FAILED ValueError: bad address 'nobody'") for line in lines
        )
        assert any(line.endswith("raised ValueError: bad address 'nobody'") for line in lines)
        assert any(
            re.search(r" ms    deferred shop\.mail\.tell_customer  \(.*\)  ok$", line) for line in lines
        )
        assert _hooks.receiver_observer is None  # tracing is off again

    def test_module_with_arguments_to_stderr(self, capsys):
        """-m module args: arguments reach the program; the timeline goes to stderr."""
        status, out, err = run(capsys, "trace", "-m", "shop.checkout", "1")
        assert status == 0
        assert out.startswith("order 99 rejected: bad address 'nobody'\n")
        assert err.startswith("tocsin trace: -m shop.checkout exited with status 0\n3 sends, ")

    def test_python_dash_m_form(self, capsys):
        """`-- python -m module` is accepted too."""
        status, _, err = run(capsys, "trace", "--", "python3", "-m", "shop.checkout", "0")
        assert status == 0
        assert err.startswith("tocsin trace: -m shop.checkout exited with status 0\n2 sends, ")

    def test_exit_status_and_crash(self, capsys, tmp_path):
        """The program's exit status is tocsin's; a crash prints its traceback and exits 1."""
        script = tmp_path / "exits.py"
        script.write_text("import sys\nsys.exit(3)\n")
        assert run(capsys, "trace", str(script))[0] == 3
        script.write_text("raise RuntimeError('crash')\n")
        status, _, err = run(capsys, "trace", str(script))
        assert status == 1
        assert "RuntimeError: crash" in err
        assert "exited with status 1" in err


class TestErrors:
    @pytest.mark.parametrize("command", ["inspect", "graph"])
    def test_unknown_module(self, capsys, command):
        """An unknown module: one line, status 1."""
        status, out, err = run(capsys, command, "no_such_module")
        assert (status, out) == (1, "")
        assert err == f"tocsin: no module named 'no_such_module' (searched sys.path from {EXAMPLES})\n"

    def test_import_error_inside_the_module(self, capsys):
        """An error raised while importing the user's module: what, and where."""
        status, out, err = run(capsys, "inspect", "shop.broken")
        assert (status, out) == (1, "")
        assert err == "tocsin: importing 'shop.broken' failed: KeyError: 'database_url' (shop/broken.py:6)\n"

    def test_missing_import_inside_the_module(self, capsys, tmp_path, monkeypatch):
        """A module that imports something missing is an import error, not an unknown module."""
        (tmp_path / "needs_missing.py").write_text("import not_installed_anywhere\n")
        monkeypatch.chdir(tmp_path)
        status, _, err = run(capsys, "inspect", "needs_missing")
        assert status == 1
        assert err.startswith(
            "tocsin: importing 'needs_missing' failed: ModuleNotFoundError: "
            "No module named 'not_installed_anywhere' (needs_missing.py:1)"
        )

    def test_no_signals(self, capsys):
        """A module without signals: an empty result is an error."""
        status, out, err = run(capsys, "graph", "shop.nothing")
        assert (status, out) == (1, "")
        assert err == (
            "tocsin: no signals found in shop.nothing "
            "(no signal is defined or imported there, or connected to a receiver defined there)\n"
        )

    def test_trace_missing_script_and_module(self, capsys):
        """trace: a missing script or module, or no program at all."""
        assert run(capsys, "trace", "--", "python", "nope.py") == (
            1,
            "",
            "tocsin: can't open file 'nope.py': no such file\n",
        )
        status, _, err = run(capsys, "trace", "-m", "nope_mod")
        assert status == 1
        assert err.startswith("tocsin: no module named 'nope_mod'")
        status, _, err = run(capsys, "trace")
        assert status == 1
        assert err.startswith("tocsin: trace needs a program: ")

    @pytest.mark.parametrize("argv", [[], ["inspect"], ["graph", "shop", "--format", "png"], ["frobnicate"]])
    def test_usage_errors(self, capsys, argv):
        """Bad usage: argparse's message and status 2."""
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "usage: tocsin" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "argv", [["--help"], ["inspect", "--help"], ["graph", "-h"], ["trace", "--help"]]
    )
    def test_help(self, capsys, argv):
        """--help everywhere."""
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
        assert capsys.readouterr().out.startswith("usage: tocsin")


class TestSubprocess:
    """The real thing: a new interpreter, nothing shared with the test process."""

    def test_python_dash_m_tocsin_inspect(self):
        """`python -m tocsin inspect shop` in a fresh process."""
        proc = subprocess.run(
            [sys.executable, "-m", "tocsin", "inspect", "shop"],
            cwd=EXAMPLES,
            capture_output=True,
            text=True,
            check=False,
        )
        assert (proc.returncode, proc.stderr) == (0, "")
        assert proc.stdout.startswith("shop.signals.order_placed  (3 receivers)\n")

    def test_console_script_trace_and_error(self):
        """The installed `tocsin` script traces a real program and fails cleanly."""
        script = shutil.which("tocsin", path=str(Path(sys.executable).parent)) or shutil.which("tocsin")
        if script is None:
            pytest.skip("the tocsin console script is not installed (pip install .)")
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(
            [script, "trace", "--", "python", "shop_demo.py"],
            cwd=EXAMPLES,
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "order 99 rejected: bad address 'nobody'\n3 mails, 4 audit entries\n"
        assert proc.stderr.startswith(
            "tocsin trace: shop_demo.py exited with status 0\n5 sends, 12 receiver calls"
        )
        proc = subprocess.run(
            [script, "inspect", "shop.broken"], cwd=EXAMPLES, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 1
        assert (
            proc.stderr
            == "tocsin: importing 'shop.broken' failed: KeyError: 'database_url' (shop/broken.py:6)\n"
        )


class TestIntrospectionRunsNoUserCode:
    """inspect/graph read what modules hold; they never run code that may raise."""

    @pytest.mark.parametrize("argv", [["inspect"], ["graph", "--format", "dot"]])
    def test_module_importing_unconfigured_django_settings(self, tmp_path, argv):
        """`from django.conf import settings` binds a lazy proxy that raises on any look-up.

        Before settings are configured, even ``isinstance(settings, Signal)``
        raises ImproperlyConfigured (it reads ``__class__``). A fresh process,
        so that no other test configured Django first.
        """
        pytest.importorskip("django")
        (tmp_path / "django_app.py").write_text(
            "from django.conf import settings\n"
            "import tocsin\n\n"
            "user_joined = tocsin.Signal(name='user_joined')\n\n\n"
            "@tocsin.receiver(user_joined)\n"
            "def greet(sender, **kwargs):\n"
            "    return settings.DEBUG\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        proc = subprocess.run(
            [sys.executable, "-m", "tocsin", *argv, "django_app"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        assert (proc.returncode, proc.stderr) == (0, "")
        assert "django_app.user_joined" in proc.stdout
        assert "django_app.greet" in proc.stdout

    def test_lazily_imported_module_stays_unloaded(self, capsys, tmp_path, monkeypatch):
        """A module imported through importlib.util.LazyLoader is not executed by inspect."""
        import importlib.util

        (tmp_path / "lazy_body.py").write_text("raise RuntimeError('the body of lazy_body ran')\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        spec = importlib.util.find_spec("lazy_body")
        assert spec is not None
        assert spec.loader is not None
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "lazy_body", module)
        spec.loader.exec_module(module)  # lazy: the body runs on first attribute access
        lazy_type = type(module)

        status, out, err = run(capsys, "inspect", "shop")
        assert (status, err) == (0, "")
        assert out.startswith("shop.signals.order_placed  (3 receivers)\n")
        assert type(module) is lazy_type  # still not loaded
        with pytest.raises(RuntimeError, match="the body of lazy_body ran"):
            _ = module.anything
