"""The job store of the background receivers: a table in the blog's own database.

``Jobs(engine)`` writes each job on the sending Session's connection, in its
transaction (the transactional outbox): a ROLLBACK drops the jobs with the
data, a COMMIT makes both durable. A worker runs them: ``jobs.start_worker()``
in the demo, ``tocsin worker --jobs sqlite+pysqlite:///blog.db --import blog.receivers``
in production.
"""

from tocsin.background import Jobs

from .db import engine

jobs = Jobs(engine, poll_interval=0.2)
