"""tocsin check / tocsin.testing.check: each classic receiver mistake on a package written to disk.

Each test writes its project into ``tmp_path`` and runs from there, so the
findings' paths are short and relative, as a user sees them.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tocsin._cli import main
from tocsin.exceptions import InvalidArgumentError
from tocsin.testing import Finding, check

SIGNALS = """
    import tocsin

    order_placed = tocsin.Signal(name="order_placed")
"""


def shown(relative: str) -> str:
    """A path as findings show it (with this system's separator)."""
    return str(Path(relative))


def write(root: Path, files: dict[str, str]) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")


@pytest.fixture(name="project")
def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


CLEAN = {
    "clean/shop/__init__.py": "from . import handlers\n",
    "clean/shop/signals.py": SIGNALS,
    "clean/shop/handlers.py": """
        import functools

        from tocsin import receiver

        from .signals import order_placed


        def log_calls(func):
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                return func(*args, **kwargs)

            return wrapper


        @receiver(order_placed)
        @log_calls  # below @receiver: the wrapper is what gets connected
        def notify(sender, **kwargs):
            pass


        class Hooks:
            @staticmethod
            @receiver(order_placed)
            def audit(sender, **kwargs):
                pass

            def __init__(self):
                order_placed.connect(self.on_order)

            def on_order(self, sender, **kwargs):
                pass
    """,
    "clean/shop/receivers.py": """
        from .signals import order_placed


        @order_placed.connect
        def count(sender, **kwargs):
            pass
    """,
    "clean/shop/plugins/__init__.py": "",
    "clean/shop/plugins/extra.py": """
        from ..signals import order_placed

        order_placed.connect(print)
    """,
    "clean/main.py": """
        import tocsin

        tocsin.autodiscover("shop")  # imports shop.signals and shop.receivers
    """,
    "clean/pyproject.toml": """
        [project]
        name = "shop"

        [project.entry-points."tocsin.receivers"]
        extra = "shop.plugins.extra"
    """,
}


class TestClean:
    def test_no_findings(self, project: Path) -> None:
        """Receivers imported by __init__, autodiscover() or an entry point; decorators in the right order."""
        write(project, CLEAN)
        assert check("clean") == []

    def test_cli_exit_status_zero(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write(project, CLEAN)
        assert main(["check", "clean"]) == 0
        assert capsys.readouterr() == ("no findings\n", "")


class TestDecoratorAboveReceiver:
    FILES = {
        "proj/shop/__init__.py": "from . import cache\n",
        "proj/shop/signals.py": SIGNALS,
        "proj/shop/cache.py": """
            from tocsin import receiver

            from .signals import order_placed
            from .utils import invalidates


            @invalidates("orders")
            @receiver(order_placed)
            def orders_changed(sender, **kwargs):
                pass
        """,
        "proj/shop/utils.py": """
            def invalidates(key):
                return lambda func: func
        """,
    }

    def test_found(self, project: Path) -> None:
        write(project, self.FILES)
        assert check("proj") == [
            Finding(
                code="decorator-above-receiver",
                path=shown("proj/shop/cache.py"),
                line=7,
                message="@invalidates('orders') is stacked above @receiver(order_placed) on "
                "orders_changed(): @receiver(order_placed) connected the undecorated function, so what "
                "@invalidates('orders') adds never runs on a send.",
                fix="put @receiver(order_placed) first (outermost), above @invalidates('orders'), so that "
                "the decorated function is what gets connected.",
            )
        ]

    def test_connect_decorator_too(self, project: Path) -> None:
        """@sig.connect(...) is a connecting decorator like @receiver."""
        files = dict(self.FILES)
        files["proj/shop/cache.py"] = files["proj/shop/cache.py"].replace(
            "@receiver(order_placed)", "@order_placed.connect(sender=None)"
        )
        write(project, files)
        [finding] = check("proj")
        assert (finding.code, finding.line) == ("decorator-above-receiver", 7)

    def test_ignored_by_comment(self, project: Path) -> None:
        files = dict(self.FILES)
        files["proj/shop/cache.py"] = files["proj/shop/cache.py"].replace(
            '@invalidates("orders")', '@invalidates("orders")  # tocsin: ignore[decorator-above-receiver]'
        )
        write(project, files)
        assert check("proj") == []


class TestReceiverOnMethod:
    def test_found(self, project: Path) -> None:
        write(
            project,
            {
                "proj/shop/__init__.py": "from . import stats\n",
                "proj/shop/signals.py": SIGNALS,
                "proj/shop/stats.py": """
                    from tocsin import receiver

                    from .signals import order_placed


                    class Stats:
                        @receiver(order_placed)
                        def count(self, sender, **kwargs):
                            pass

                        @classmethod
                        @receiver(order_placed)
                        def total(cls, sender, **kwargs):
                            pass
                """,
            },
        )
        findings = check("proj")
        assert [(f.code, f.line) for f in findings] == [
            ("receiver-on-method", 7),
            ("decorator-above-receiver", 11),
            ("receiver-on-method", 12),
        ]
        assert findings[0].message == (
            "@receiver(order_placed) on the method count() in a class body connects the plain function, "
            "unbound, when the class is created: every send calls it without self and fails."
        )
        assert findings[0].fix == (
            "remove @receiver(order_placed) and connect the bound method of each instance "
            "(signal.connect(self.count) in __init__), or move count() to module level "
            "(or make it a @staticmethod)."
        )


class TestUnimportedReceivers:
    FILES = {
        "proj/shop/__init__.py": "",
        "proj/shop/signals.py": SIGNALS,
        "proj/shop/orphan.py": """
            from tocsin import receiver

            from .signals import order_placed


            @receiver(order_placed)
            def forgotten(sender, **kwargs):
                pass
        """,
        "proj/shop/service.py": """
            from .signals import order_placed


            def place():
                order_placed.send(sender=None)
        """,
    }

    def test_found(self, project: Path) -> None:
        write(project, self.FILES)
        assert check("proj") == [
            Finding(
                code="unimported-receivers",
                path=shown("proj/shop/orphan.py"),
                line=6,
                message="shop.orphan connects receivers when imported, but no scanned module imports it and "
                "no autodiscover() call or tocsin.receivers entry point lists it: its receivers are "
                "probably never connected.",
                fix="import it at startup: tocsin.autodiscover('shop', modules=('orphan',)), or "
                "'from . import orphan' in shop/__init__.py, or a tocsin.receivers entry point "
                "(if code outside the scanned files imports it, add '# tocsin: ignore' to this line).",
            )
        ]

    @pytest.mark.parametrize(
        "startup",
        [
            "from shop import orphan",
            "import shop.orphan",
            "import importlib\nimportlib.import_module('shop.orphan')",
            "import tocsin\ntocsin.autodiscover('shop', modules=['orphan'])",
            "import tocsin\ntocsin.autodiscover('shop', modules=MODULES)",  # not known statically: trusted
        ],
    )
    def test_imported_somehow(self, project: Path, startup: str) -> None:
        write(project, {**self.FILES, "proj/shop/startup.py": startup + "\n"})
        assert check("proj") == []

    def test_lazy_import_in_a_function(self, project: Path) -> None:
        write(project, {**self.FILES, "proj/shop/startup.py": "def ready():\n    from . import orphan\n"})
        assert check("proj") == []

    def test_autodiscover_of_other_modules_does_not_count(self, project: Path) -> None:
        write(project, {**self.FILES, "proj/run.py": "import tocsin\ntocsin.autodiscover('shop')\n"})
        assert [f.code for f in check("proj")] == ["unimported-receivers"]

    def test_receivers_connected_in_a_function_only(self, project: Path) -> None:
        """A module that connects only when a function runs connects nothing at import: not reported."""
        files = dict(self.FILES)
        files["proj/shop/orphan.py"] = (
            "from .signals import order_placed\n\ndef setup():\n    order_placed.connect(print)\n"
        )
        write(project, files)
        assert check("proj") == []


class TestModuleCopies:
    FILES = {
        "proj/app/__init__.py": "",
        "proj/app/defs.py": SIGNALS,
        "proj/app/signals.py": """
            from tocsin import receiver

            from app.defs import order_placed


            @receiver(order_placed)
            def on_order(sender, **kwargs):
                pass
        """,
        # Run as `python app/main.py`: app/ is first on sys.path, so this is a second copy.
        "proj/app/main.py": """
            import signals

            if __name__ == "__main__":
                pass
        """,
        "proj/app/views.py": "from app import signals\n",
    }

    def test_found_statically(self, project: Path) -> None:
        write(project, self.FILES)
        signals = shown("proj/app/signals.py")
        assert check("proj") == [
            Finding(
                code="module-copies",
                path=signals,
                line=6,
                message=f"{signals} is imported under 2 names, 'app.signals' "
                f"({shown('proj/app/views.py')}:1), 'signals' "
                f"({shown('proj/app/main.py')}:1): each name runs it again, connecting its own "
                "copy of each receiver, so every send calls them twice.",
                fix="import the module under one name only (check sys.path and how the program is started, "
                "and use the package name everywhere), or connect with dispatch_uid= so the second connect "
                "is a duplicate.",
            )
        ]

    def test_found_at_run_time(
        self, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--import: the live connections show the two module objects."""
        write(project, self.FILES)
        monkeypatch.syspath_prepend(str(project / "proj"))
        monkeypatch.syspath_prepend(str(project / "proj" / "app"))
        for name in ("app", "app.defs", "app.signals", "signals"):
            monkeypatch.delitem(sys.modules, name, raising=False)
        first = importlib.import_module("app.signals")
        second = importlib.import_module("signals")
        try:
            assert main(["check", "--import", "--format", "json", "proj"]) == 1
            found = json.loads(capsys.readouterr().out)
            live = [f for f in found if "from two copies of its module" in f["message"]]
            assert [(f["code"], f["path"]) for f in live] == [("module-copies", shown("proj/app/signals.py"))]
        finally:
            first.order_placed.disconnect(first.on_order)
            second.order_placed.disconnect(second.on_order)
            for name in ("app", "app.defs", "app.signals", "signals"):
                sys.modules.pop(name, None)

    def test_live_module_copies(self, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from tocsin._observability.check import live_module_copies

        write(project, self.FILES)
        monkeypatch.syspath_prepend(str(project / "proj"))
        monkeypatch.syspath_prepend(str(project / "proj" / "app"))
        first = importlib.import_module("app.signals")
        second = importlib.import_module("signals")
        try:
            [finding] = [f for f in live_module_copies() if f.path.endswith("signals.py")]
        finally:
            first.order_placed.disconnect(first.on_order)
            second.order_placed.disconnect(second.on_order)
            for name in ("app", "app.defs", "app.signals", "signals"):
                sys.modules.pop(name, None)
        assert (finding.code, finding.path, finding.line) == (
            "module-copies",
            shown("proj/app/signals.py"),
            6,  # the function's first line: its decorator
        )
        assert "from two copies of its module, 'app.signals' and 'signals'" in finding.message


class TestTargets:
    def test_module_name(self, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A dotted module name is found on sys.path without being imported."""
        write(
            project,
            {
                "lib/shoplib/__init__.py": "",
                "lib/shoplib/orphan.py": TestUnimportedReceivers.FILES["proj/shop/orphan.py"].replace(
                    ".signals", "shoplib.signals"
                ),
                "lib/shoplib/signals.py": SIGNALS,
            },
        )
        monkeypatch.syspath_prepend(str(project / "lib"))
        assert [f.code for f in check("shoplib")] == ["unimported-receivers"]
        assert "shoplib" not in sys.modules

    def test_missing_target(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(InvalidArgumentError, match=r"'nowhere' is neither a file nor a directory"):
            check("nowhere")
        assert main(["check", "nowhere"]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith(
            "tocsin: tocsin check scans files, directories and importable modules; 'nowhere'"
        )

    def test_no_target(self) -> None:
        with pytest.raises(InvalidArgumentError, match="at least one file"):
            check()

    def test_syntax_error(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write(project, {"bad/broken.py": "def (:\n"})
        with pytest.raises(SyntaxError):
            check("bad")
        assert main(["check", "bad"]) == 1
        assert capsys.readouterr().err.startswith("tocsin: cannot parse ")

    def test_skips_virtual_environments_and_hidden_dirs(self, project: Path) -> None:
        write(
            project,
            {
                "proj/.venv/pyvenv.cfg": "",
                "proj/.venv/lib/pkg/__init__.py": "",
                "proj/venv2/pyvenv.cfg": "",
                "proj/venv2/pkg/__init__.py": "",
                "proj/venv2/pkg/broken.py": "def (:\n",
            },
        )
        assert check("proj") == []


class TestCommand:
    FILES = {
        **TestDecoratorAboveReceiver.FILES,
        "proj/shop/orphan.py": TestUnimportedReceivers.FILES["proj/shop/orphan.py"],
    }

    def test_text(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write(project, self.FILES)
        assert main(["check", "proj"]) == 1
        out, err = capsys.readouterr()
        lines = out.splitlines()
        assert lines[0].startswith(f"{shown('proj/shop/cache.py')}:7: [decorator-above-receiver] ")
        assert lines[1].startswith(f"{shown('proj/shop/orphan.py')}:6: [unimported-receivers] ")
        assert lines[2:] == ["2 findings"]
        assert err == ""

    def test_json(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write(project, self.FILES)
        assert main(["check", "--format", "json", "proj"]) == 1
        found = json.loads(capsys.readouterr().out)
        assert [(f["code"], f["line"]) for f in found] == [
            ("decorator-above-receiver", 7),
            ("unimported-receivers", 6),
        ]
        assert set(found[0]) == {"code", "path", "line", "message", "fix"}

    def test_subprocess(self, project: Path) -> None:
        """The real command, as CI runs it: findings on stdout and exit status 1."""
        write(project, self.FILES)
        result = subprocess.run(
            [sys.executable, "-m", "tocsin", "check", "proj"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert (result.returncode, result.stderr) == (1, "")
        assert result.stdout.splitlines()[-1] == "2 findings"
