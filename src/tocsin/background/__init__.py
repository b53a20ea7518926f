"""Background receivers: durable jobs on an embedded store, written in your transaction.

A background receiver is an ordinary receiver connected ``via=`` a job
store's policy::

    from tocsin.background import Jobs

    jobs = Jobs("sqlite:///jobs.db")  # embedded: a SQLite file, no server, stdlib only
    jobs = Jobs(engine)               # or your SQLAlchemy database (SQLite, PostgreSQL)

    index_key = lambda instance, **kw: f"index:{instance.id}"
    @receiver(post_save, sender=Order, via=jobs.later(retries=5, key=index_key))
    def reindex(sender, instance, job, **kwargs): ...

``send()`` writes a job instead of calling ``reindex`` and returns a
``tocsin.Deferred`` whose ``handle`` is the job id; a worker
(``tocsin worker --jobs URL --import myapp.receivers``, or
``jobs.start_worker()`` in-process) runs it at least once. Guarantees,
failure modes and the worker's options: ``docs/background.md``.

.. versionadded:: 0.1
"""

from __future__ import annotations

from ._errors import JobsConfigurationError as JobsConfigurationError
from ._errors import PayloadError as PayloadError
from ._errors import ReceiverNotNameableError as ReceiverNotNameableError
from ._jobs import Jobs as Jobs
from ._policy import Later as Later
from ._runner import JobContext as JobContext
from ._store import Job as Job
from ._worker import Worker as Worker

__all__ = [
    "Job",
    "JobContext",
    "Jobs",
    "JobsConfigurationError",
    "Later",
    "PayloadError",
    "ReceiverNotNameableError",
    "Worker",
]
