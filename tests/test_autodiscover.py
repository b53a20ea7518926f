"""tocsin.autodiscover: receiver modules of packages on disk and of installed distributions.

Every package here is written into a fresh directory put on ``sys.path``
for the test (and taken off after, with the modules it imported), under a
name of its own, so tests never share a module.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
from pathlib import Path

import pytest

import tocsin
from tocsin.exceptions import InvalidArgumentError

_numbers = itertools.count()


class Site:
    """A directory on ``sys.path`` to write packages and distributions into."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def package(self, files: dict[str, str]) -> str:
        """Write a package of *files* (relative paths -> source); return its unique name."""
        name = f"adpkg{next(_numbers)}"
        for relative, source in {"__init__.py": "", **files}.items():
            path = self.root / name / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        return name

    def distribution(self, entry_points: str) -> str:
        """Install a minimal distribution (a .dist-info) declaring *entry_points*; return its name."""
        name = f"adplugin{next(_numbers)}"
        info = self.root / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points), encoding="utf-8")
        importlib.invalidate_caches()
        return name


@pytest.fixture(name="site")
def _site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))
    before = set(sys.modules)
    try:
        yield Site(root)
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            if name.startswith("adpkg"):
                del sys.modules[name]
        importlib.invalidate_caches()


# A package whose __init__ defines a signal and a list of calls; its
# receiver modules append to the list when the signal is sent.
INIT = """
    import tocsin
    ping = tocsin.Signal(name="ping")
    calls = []
"""
RECEIVERS = """
    from tocsin import receiver
    from . import ping, calls

    @receiver(ping)
    def on_ping(sender, **kwargs):
        calls.append(__name__)
"""


def send_ping(package: str) -> list[str]:
    module = sys.modules[package]
    module.ping.send(sender=None)
    return module.calls


class TestPackages:
    def test_imports_signals_and_receivers(self, site):
        """Both default submodules are imported, and their receivers connected."""
        pkg = site.package({"__init__.py": INIT, "signals.py": RECEIVERS, "receivers.py": RECEIVERS})
        assert tocsin.autodiscover(pkg) == [pkg, f"{pkg}.signals", f"{pkg}.receivers"]
        assert send_ping(pkg) == [f"{pkg}.signals", f"{pkg}.receivers"]

    def test_twice_connects_once(self, site):
        """A second call (ready() run twice) imports nothing again: each receiver runs once per send."""
        pkg = site.package({"__init__.py": INIT, "signals.py": RECEIVERS})
        first = tocsin.autodiscover(pkg)
        module = sys.modules[f"{pkg}.signals"]
        assert tocsin.autodiscover(pkg) == first
        assert sys.modules[f"{pkg}.signals"] is module
        assert send_ping(pkg) == [f"{pkg}.signals"]

    def test_missing_submodule_is_skipped(self, site):
        """A package with neither submodule is imported and nothing else happens."""
        pkg = site.package({"__init__.py": INIT, "models.py": "raise AssertionError('not imported')\n"})
        assert tocsin.autodiscover(pkg) == [pkg]
        assert f"{pkg}.models" not in sys.modules

    def test_import_error_inside_a_submodule_propagates(self, site):
        """An ImportError raised by an existing submodule is the module's own: it propagates unchanged."""
        pkg = site.package({"signals.py": "import adpkg_no_such_dependency\n"})
        with pytest.raises(ModuleNotFoundError, match="adpkg_no_such_dependency") as caught:
            tocsin.autodiscover(pkg)
        assert caught.value.name == "adpkg_no_such_dependency"
        assert f"{pkg}.signals" not in sys.modules

    def test_failed_module_is_tried_again(self, site):
        """A module whose import failed is imported again by the next call, once fixed."""
        pkg = site.package({"__init__.py": INIT, "signals.py": "raise RuntimeError('broken')\n"})
        with pytest.raises(RuntimeError, match="broken"):
            tocsin.autodiscover(pkg)
        (site.root / pkg / "signals.py").write_text(textwrap.dedent(RECEIVERS), encoding="utf-8")
        importlib.invalidate_caches()
        assert tocsin.autodiscover(pkg) == [pkg, f"{pkg}.signals"]
        assert send_ping(pkg) == [f"{pkg}.signals"]

    def test_custom_and_dotted_modules(self, site):
        """modules= names other submodules, dotted ones included; a missing level is a skip."""
        pkg = site.package(
            {
                "__init__.py": INIT,
                "handlers/__init__.py": "",
                "handlers/mail.py": RECEIVERS.replace("from . import", "from .. import"),
            }
        )
        found = tocsin.autodiscover(pkg, modules=["handlers.mail", "nowhere.deeper", "handlers.none"])
        assert found == [pkg, f"{pkg}.handlers.mail"]
        assert send_ping(pkg) == [f"{pkg}.handlers.mail"]

    def test_module_object_and_plain_module(self, site):
        """A module object is accepted; a plain module (not a package) has no submodules to look for."""
        pkg = site.package({"__init__.py": INIT, "signals.py": RECEIVERS, "plain.py": "X = 1\n"})
        plain = importlib.import_module(f"{pkg}.plain")
        assert tocsin.autodiscover(plain, modules=["signals"]) == [f"{pkg}.plain"]
        assert tocsin.autodiscover(sys.modules[pkg]) == [pkg, f"{pkg}.signals"]

    def test_several_packages_in_order(self, site):
        first = site.package({"__init__.py": INIT, "receivers.py": RECEIVERS})
        second = site.package({"__init__.py": INIT, "signals.py": RECEIVERS})
        assert tocsin.autodiscover(first, second) == [
            first,
            f"{first}.receivers",
            second,
            f"{second}.signals",
        ]

    def test_missing_package_raises(self, site):
        """A package named explicitly must exist."""
        del site
        with pytest.raises(ModuleNotFoundError, match="adpkg_missing"):
            tocsin.autodiscover("adpkg_missing")


class TestArguments:
    def test_modules_as_one_string(self):
        """modules="signals" would look for s, i, g...: refused, with the fix."""
        with pytest.raises(
            InvalidArgumentError, match=r"got 'signals'\. For one name write modules=\('signals',\)\."
        ):
            tocsin.autodiscover("tocsin", modules="signals")

    @pytest.mark.parametrize("bad", ["", ".signals", 42])
    def test_bad_module_name(self, bad):
        with pytest.raises(InvalidArgumentError, match="submodule names relative to each package"):
            tocsin.autodiscover("tocsin", modules=[bad])

    def test_bad_package(self):
        with pytest.raises(InvalidArgumentError, match=r"got 42 of type int\.$"):
            tocsin.autodiscover(42)  # type: ignore[arg-type]

    def test_bad_entry_points(self):
        with pytest.raises(InvalidArgumentError, match=r"entry_points=.*got 1\.$"):
            tocsin.autodiscover(entry_points=1)  # type: ignore[arg-type]


class TestEntryPoints:
    def test_module_entry_point(self, site):
        """An installed distribution contributes a receiver module through tocsin.receivers."""
        pkg = site.package({"__init__.py": INIT, "receivers.py": RECEIVERS})
        site.distribution(f"[tocsin.receivers]\nplug = {pkg}.receivers\n")
        assert f"{pkg}.receivers" not in sys.modules
        assert tocsin.autodiscover() == []  # entry points only when asked for
        assert tocsin.autodiscover(entry_points=True) == [f"{pkg}.receivers"]
        assert tocsin.autodiscover(entry_points=True) == [f"{pkg}.receivers"]
        assert send_ping(pkg) == [f"{pkg}.receivers"]

    def test_callable_entry_point_is_called_once(self, site):
        """module:function is called once per process, however often autodiscover runs."""
        pkg = site.package(
            {
                "__init__.py": INIT,
                "plugin.py": """
                    from . import ping, calls

                    def on_ping(sender, **kwargs):
                        calls.append("plugin")

                    def setup():
                        ping.connect(on_ping, dispatch_uid=object())  # a new uid each call
                """,
            }
        )
        site.distribution(f"[tocsin.receivers]\nplug = {pkg}.plugin:setup\n")
        assert tocsin.autodiscover(entry_points=True) == [f"{pkg}.plugin:setup"]
        assert tocsin.autodiscover(entry_points=True) == [f"{pkg}.plugin:setup"]
        assert send_ping(pkg) == ["plugin"]

    def test_other_group(self, site):
        pkg = site.package({"__init__.py": INIT, "receivers.py": RECEIVERS})
        site.distribution(f"[myapp.plugins]\nplug = {pkg}.receivers\n")
        assert tocsin.autodiscover(entry_points=True) == []
        assert tocsin.autodiscover(entry_points="myapp.plugins") == [f"{pkg}.receivers"]

    def test_failing_entry_point_propagates_with_a_note(self, site):
        """The plugin's own error propagates unchanged; on 3.11+ a note names the entry point."""
        pkg = site.package({"receivers.py": "raise LookupError('plugin bug')\n"})
        dist = site.distribution(f"[tocsin.receivers]\nplug = {pkg}.receivers\n")
        with pytest.raises(LookupError, match="plugin bug") as caught:
            tocsin.autodiscover(entry_points=True)
        if sys.version_info >= (3, 11):
            assert caught.value.__notes__ == [
                f"while loading entry point plug = '{pkg}.receivers' (group 'tocsin.receivers') of {dist}"
            ]
