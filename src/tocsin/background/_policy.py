"""``jobs.later()``: the delivery policy that turns a receiver call into a job.

At ``connect()`` the policy refuses receivers a worker could not find by
name (``check_receiver``, the core's hook for policies). At ``send()`` it
runs in the sending thread, in the receiver's turn, and does everything that
can fail there: names the receiver and the signal, encodes the arguments
(``_payload``), computes the key; then hands the finished row to its
:class:`~tocsin.background.Jobs` to write (``Jobs._enqueue``). So a bad
argument raises in the caller and nothing is written.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
import weakref
from collections.abc import Callable
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any, cast

from tocsin.exceptions import SendArgumentsError

from . import _payload
from ._errors import JobsConfigurationError, PayloadError, ReceiverNotNameableError
from ._store import NewJob

if TYPE_CHECKING:
    from tocsin._core.delivery import DeferredCall

    from ._jobs import Jobs

__all__ = ["Later", "new_job_id", "receiver_name", "signal_name"]


def receiver_name(receiver: object) -> str | None:
    """``module:qualname`` of a receiver a worker can find by name, else None.

    Module-level functions (sync or async), static methods and class methods
    (bound to their class) have one; lambdas, nested functions, partials,
    callable instances and methods bound to an instance do not.
    """
    if isinstance(receiver, MethodType):
        if not isinstance(receiver.__self__, type):
            return None
        receiver = receiver.__func__
    if not isinstance(receiver, FunctionType):
        return None
    qualname = receiver.__qualname__
    module = receiver.__module__
    if "<" in qualname or not isinstance(module, str):  # <lambda>, <locals>
        return None
    return f"{module}:{qualname}"


def _why_not_nameable(receiver: object) -> str:
    if isinstance(receiver, MethodType) and not isinstance(receiver.__self__, type):
        return "it is a method bound to an instance (connect a module-level function or a classmethod)"
    if isinstance(receiver, FunctionType):
        if receiver.__name__ == "<lambda>":
            return "it is a lambda (define it with def at module level)"
        return "it is defined inside a function (move it to module level)"
    return "it is not a function (functools.partial or a callable instance); connect a module-level function"


_signal_names: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def signal_name(signal: Any) -> str | None:
    """The name of *signal* shared by every process: ``module:attribute``, else ``module:name``.

    The attribute of the module that constructed it (as pickling finds it);
    a signal bound nowhere is named by its ``name=``. None when it has
    neither.
    """
    try:
        return _signal_names[signal]
    except (KeyError, TypeError):
        pass
    module_name = getattr(signal, "module", None)
    found = None
    module = sys.modules.get(module_name) if isinstance(module_name, str) else None
    if module is not None:
        for attr, value in list(vars(module).items()):
            if value is signal:
                found = f"{module_name}:{attr}"
                break
    if found is None:
        name = getattr(signal, "name", None)
        if isinstance(name, str) and name:
            found = f"{module_name or '?'}:{name}"
    if found is not None:
        with contextlib.suppress(TypeError):  # not weakly referenceable: computed each time
            _signal_names[signal] = found
    return found


_counter = itertools.count()
_prefix: list[str] = []


def _new_prefix() -> None:
    _prefix[:] = [os.urandom(5).hex()]


_new_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_prefix)


def new_job_id() -> str:
    """A unique, time-ordered job id: 12 hex digits of milliseconds, then process and sequence.

    Time-ordered ids keep inserts at the end of the primary key index.
    """
    return f"{int(time.time() * 1000):012x}{_prefix[0]}{next(_counter) & 0xFFFFFFFF:08x}"


KeyFunction = Callable[..., Any]


class Later:
    """The policy ``jobs.later()`` returns; pass it as ``via=``.

    Calling it with a ``DeferredCall`` writes a job and returns its id (the
    ``Deferred.handle`` of the send). See ``Jobs.later`` for the options.
    """

    __slots__ = ("__weakref__", "backoff", "delay", "jobs", "key", "max_backoff", "retries")

    def __init__(
        self,
        jobs: Jobs,
        *,
        retries: int,
        key: str | KeyFunction | None,
        backoff: float,
        max_backoff: float,
        delay: float,
    ) -> None:
        if type(retries) is not int or retries < 0:
            msg = f"retries= must be an int >= 0 (attempts after the first); got {retries!r}."
            raise JobsConfigurationError(msg)
        for option, value in (("backoff", backoff), ("max_backoff", max_backoff), ("delay", delay)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                msg = f"{option}= must be a number of seconds >= 0; got {value!r}."
                raise JobsConfigurationError(msg)
        if key is not None and not isinstance(key, str) and not callable(cast("object", key)):
            msg = (
                f"key= must be a string, or a function of the send's arguments returning one "
                f"(key=lambda instance, **kw: f'index:{{instance.id}}'); got {key!r}."
            )
            raise JobsConfigurationError(msg)
        self.jobs = jobs
        self.retries = retries
        self.key = key
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.delay = float(delay)

    def check_receiver(self, receiver: Callable[..., Any], signal: object) -> None:
        """Refuse, at connect, a receiver or signal a worker could not find by name."""
        if receiver_name(receiver) is None:
            msg = (
                f"{receiver!r} cannot be connected via={self!r}: a worker finds a job's receiver by "
                f"module and name, and {_why_not_nameable(receiver)}. Nothing was connected."
            )
            raise ReceiverNotNameableError(msg)
        if signal_name(signal) is None:
            msg = (
                f"{signal!r} has no name a worker can find: bind it to a module-level name, or give it "
                f"one (Signal(name='order_placed')). Nothing was connected."
            )
            raise ReceiverNotNameableError(msg)

    def __call__(self, call: DeferredCall) -> str:
        kwargs = call.kwargs
        if "job" in kwargs:
            msg = (
                f"a background receiver ({receiver_name(call.receiver)}) gets job= from its worker; this "
                f"send's own job= argument would be replaced. Rename it (job={kwargs['job']!r})."
            )
            raise SendArgumentsError(msg)
        jobs = self.jobs
        if jobs.eager:
            return jobs._run_eager(call, self)  # noqa: SLF001 - the policy's own Jobs
        job = self.build(call)
        jobs._enqueue(job, call)  # noqa: SLF001 - the policy's own Jobs
        return job.id

    def build(self, call: DeferredCall) -> NewJob:
        """The job row for *call* (everything that can fail in the caller happens here)."""
        receiver = receiver_name(call.receiver)
        signal = signal_name(call.signal)
        if receiver is None or signal is None:  # connected some other way: refuse as connect() would
            self.check_receiver(call.receiver, call.signal)
            msg = f"{call.receiver!r} or {call.signal!r} has no name a worker can find"
            raise ReceiverNotNameableError(msg)
        payload, has_models = _payload.encode(call.sender, call.kwargs)
        if has_models and self.jobs.sessions is None:
            msg = (
                f"a SQLAlchemy model instance was sent to {receiver}, but {self.jobs!r} has no sessions= "
                f"to load it in the worker: Jobs(..., sessions=sessionmaker(engine)), or Jobs(engine)."
            )
            raise PayloadError(msg, "?")
        now = self.jobs.clock()
        return NewJob(
            id=new_job_id(),
            receiver=receiver,
            signal=signal,
            payload=payload,
            job_key=self._key(call),
            max_attempts=self.retries + 1,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            run_at=now + self.delay,
            created_at=now,
            origin=self.jobs._origin_of(call),  # noqa: SLF001 - the policy's own Jobs
        )

    def _key(self, call: DeferredCall) -> str | None:
        key = self.key
        if key is None or isinstance(key, str):
            return key
        value = key(signal=call.signal, sender=call.sender, **call.kwargs)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        msg = f"key= function {key!r} must return a string (or None for no key); returned {value!r}."
        raise JobsConfigurationError(msg)

    def __repr__(self) -> str:
        options = [f"retries={self.retries}"]
        if self.key is not None:
            options.append(f"key={self.key!r}")
        if self.delay:
            options.append(f"delay={self.delay:g}")
        return f"{self.jobs!r}.later({', '.join(options)})"
