"""Find the signals of some modules and describe or draw them (for the CLI)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
from typing import TYPE_CHECKING, Any

from tocsin._core import hooks as _hooks
from tocsin._core import receivers as _receivers
from tocsin._core.signal import Signal

from .observe import signal_label
from .trace import sender_label

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tocsin._core.records import Connection

__all__ = ["SignalInfo", "collect", "render_dot", "render_json", "render_mermaid", "render_text"]


@dataclasses.dataclass
class SignalInfo:
    """A signal, the dotted name it is found under, and its connections."""

    signal: Signal
    name: str
    doc: str | None
    connections: list[Connection]


def _within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _is_private(path: str) -> bool:
    return any(part.startswith("_") for part in path.split("."))


_module_dict = vars(types.ModuleType)["__dict__"]  # the descriptor of every module's namespace


def _namespace(module: object) -> list[tuple[str, Any]]:
    """The attributes of a module in ``sys.modules``, read without running any of its code.

    The module's own ``__dict__`` is read through ``ModuleType``'s descriptor:
    plain attribute access would load a lazy module
    (``importlib.util.LazyLoader``), running its body, which may raise.
    Entries that are not modules (None, a proxy object) have no attributes here.
    """
    if not issubclass(type(module), types.ModuleType):
        return []
    namespace = _module_dict.__get__(module)
    return list(namespace.items()) if type(namespace) is dict else []


def _bindings() -> dict[int, list[str]]:
    """Map ``id(signal)`` to every ``module.attribute`` bound to it, best name first.

    Best: a public path (a package's ``_private`` module re-exported by a
    public one loses), then one in the defining module's top-level package
    (a library's own name for its signal, not an app's import of it), then
    the defining module's, then one under the signal's own name, then the
    deepest module, then alphabetical order.
    """
    found: dict[int, list[tuple[tuple[bool, bool, bool, bool, int, str], str]]] = {}
    for modname, module in list(sys.modules.items()):
        for attr, value in _namespace(module):
            # type(), not isinstance(): isinstance() reads __class__, which a
            # lazy proxy computes by running user code (Django's unconfigured
            # ``settings`` raises ImproperlyConfigured).
            if issubclass(type(value), Signal):
                path = f"{modname}.{attr}"
                definer = getattr(value, "module", None) or ""
                rank = (
                    _is_private(path),
                    modname.split(".", 1)[0] != definer.split(".", 1)[0],
                    modname != definer,
                    attr != value.name,
                    -modname.count("."),
                    path,
                )
                found.setdefault(id(value), []).append((rank, path))
    return {key: [path for _, path in sorted(paths)] for key, paths in found.items()}


def collect(modules: list[str]) -> list[SignalInfo]:
    """Find the live signals of *modules*, sorted by name.

    That is every signal bound in one of the modules (or their submodules),
    re-exports included, or that a receiver defined there is connected to.
    """
    bindings = _bindings()
    found = []
    for signal in _hooks.live_signals():
        paths = bindings.get(id(signal), [])
        connections = signal.connections()
        homes: list[str | None] = [path.rsplit(".", 1)[0] for path in paths] or [signal.module]
        in_scope = any(home is not None and _within(home, modules) for home in homes) or any(
            _within(c.module, modules) for c in connections
        )
        if in_scope:
            name = paths[0] if paths else signal_label(signal)
            found.append(SignalInfo(signal, name, signal.doc, connections))
    found.sort(key=lambda info: info.name)
    return found


def _where(where: str | None) -> str | None:
    if where is None:
        return None
    path, _, line = where.rpartition(":")
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return where
    return f"{rel}:{line}" if not rel.startswith("..") else where


def _delivery(connection: Connection) -> str:
    if connection.via is None:
        return "immediate"
    return _receivers.qualified_name(connection.via)


def _on_error(connection: Connection) -> str | None:
    """The qualified name of the connection's ``on_error`` handler, or ``None``.

    ``None`` too for a weakly held bound-method handler whose instance was
    collected: it is no longer called (see ``errors``).
    """
    handler = connection.on_error
    return None if handler is None else _receivers.qualified_name(handler)


def _sender(connection: Connection) -> str:
    return "any" if connection.sender is None else sender_label(connection.sender)


def _receiver_name(connection: Connection) -> str:
    return f"{connection.module}.{connection.qualname}" if connection.module else connection.qualname


def _as_dict(info: SignalInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "doc": info.doc,
        "receivers": [
            {
                "receiver": _receiver_name(c),
                "where": _where(c.where),
                "sender": None if c.sender is None else sender_label(c.sender),
                "weak": c.weak,
                "priority": c.priority,
                "dispatch_uid": None if c.dispatch_uid is None else repr(c.dispatch_uid),
                "delivery": _delivery(c),
                "async": c.is_async,
                "on_error": _on_error(c),
            }
            for c in _in_order(info.connections)
        ],
    }


def _in_order(connections: list[Connection]) -> list[Connection]:
    # The order a send calls them in: priority, then connection order.
    return sorted(connections, key=lambda c: -c.priority)


def render_json(infos: list[SignalInfo]) -> str:
    """Render the signals as a JSON document ``{"signals": [...]}``."""
    return json.dumps({"signals": [_as_dict(info) for info in infos]}, indent=2)


def render_text(infos: list[SignalInfo]) -> str:
    """Render the signals and their receivers as plain text."""
    lines = []
    for info in infos:
        count = len(info.connections)
        lines.append(f"{info.name}  ({count} receiver{'s' * (count != 1)})")
        if info.doc:
            lines.append(f"    {info.doc.strip().splitlines()[0]}")
        for c in _in_order(info.connections):
            lines.append(f"  - {_receiver_name(c)}  {_where(c.where) or '<unknown location>'}")
            uid = "-" if c.dispatch_uid is None else repr(c.dispatch_uid)
            lines.append(
                f"      sender={_sender(c)} {'weak' if c.weak else 'strong'} priority={c.priority} "
                f"dispatch_uid={uid} delivery={_delivery(c)} on_error={_on_error(c) or '-'}"
                f"{' async' if c.is_async else ''}"
            )
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _nodes(
    infos: list[SignalInfo],
) -> tuple[dict[str, str], dict[str, str], list[tuple[str, str, str | None]]]:
    """Sender and receiver node ids, and edges ``(from, to, label)``."""
    senders: dict[str, str] = {}
    receivers: dict[str, str] = {}
    edges: list[tuple[str, str, str | None]] = []
    for index, info in enumerate(infos):
        sig = f"sig{index}"
        for c in _in_order(info.connections):
            rid = receivers.setdefault(_receiver_name(c), f"rcv{len(receivers)}")
            options = []
            if c.sender is not None:
                sname = sender_label(c.sender)
                sid = senders.setdefault(sname, f"snd{len(senders)}")
                if (sid, sig, None) not in edges:
                    edges.append((sid, sig, None))
                options.append(f"sender={sname.rsplit('.', 1)[-1]}")
            handler = _on_error(c)
            if handler is not None:
                options.append(f"on_error={handler}")
            edges.append((sig, rid, " ".join(options) or None))
    return senders, receivers, edges


def render_mermaid(infos: list[SignalInfo]) -> str:
    """Render a Mermaid flowchart: senders --> signals --> receivers."""
    senders, receivers, edges = _nodes(infos)
    lines = ["flowchart LR"]
    lines += [f"    {sid}[{_mermaid_text(name)}]" for name, sid in senders.items()]
    lines += [f"    sig{i}{{{{{_mermaid_text(info.name)}}}}}" for i, info in enumerate(infos)]
    lines += [f"    {rid}([{_mermaid_text(name)}])" for name, rid in receivers.items()]
    for src, dst, label in edges:
        arrow = "-->" if label is None else f"-->|{_mermaid_text(label)}|"
        lines.append(f"    {src} {arrow} {dst}")
    return "\n".join(lines)


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(infos: list[SignalInfo]) -> str:
    """Render a Graphviz digraph: senders -> signals -> receivers."""
    senders, receivers, edges = _nodes(infos)
    lines = ["digraph tocsin {", "    rankdir=LR;"]
    lines += [f"    {sid} [shape=box, label={_dot_text(name)}];" for name, sid in senders.items()]
    lines += [f"    sig{i} [shape=hexagon, label={_dot_text(info.name)}];" for i, info in enumerate(infos)]
    lines += [f"    {rid} [shape=ellipse, label={_dot_text(name)}];" for name, rid in receivers.items()]
    for src, dst, label in edges:
        attrs = "" if label is None else f" [label={_dot_text(label)}]"
        lines.append(f"    {src} -> {dst}{attrs};")
    lines.append("}")
    return "\n".join(lines)
