"""SQLAlchemy integration: Django's model signals and ``on_commit``.

Switch model signals on once per declarative base, registry or
sessionmaker::

    import tocsin.sqlalchemy as ts

    ts.install(Base)

    @ts.post_save.connect(sender=Article)
    def index(sender, instance, created, **kwargs): ...

The names and keyword arguments are Django's; see ``docs/sqlalchemy.md``.
"""

from __future__ import annotations

try:
    import sqlalchemy as _sqlalchemy  # noqa: F401 - fail here, naming the extra
except ImportError:
    msg = "tocsin.sqlalchemy requires SQLAlchemy: pip install 'tocsin[sqlalchemy]'"
    raise ImportError(msg) from None

from ._commit import SessionNotFoundError as SessionNotFoundError
from ._commit import capture_on_commit_callbacks as capture_on_commit_callbacks
from ._commit import on_commit as on_commit
from ._commit import send_on_commit as send_on_commit
from ._commit import send_robust_on_commit as send_robust_on_commit
from ._commit import use_session as use_session
from ._models import ModelSignal as ModelSignal
from ._models import class_prepared as class_prepared
from ._models import install as install
from ._models import m2m_changed as m2m_changed
from ._models import post_delete as post_delete
from ._models import post_init as post_init
from ._models import post_save as post_save
from ._models import pre_delete as pre_delete
from ._models import pre_init as pre_init
from ._models import pre_save as pre_save
from ._models import raw_loading as raw_loading

__all__ = [
    "ModelSignal",
    "SessionNotFoundError",
    "capture_on_commit_callbacks",
    "class_prepared",
    "install",
    "m2m_changed",
    "on_commit",
    "post_delete",
    "post_init",
    "post_save",
    "pre_delete",
    "pre_init",
    "pre_save",
    "raw_loading",
    "send_on_commit",
    "send_robust_on_commit",
    "use_session",
]
