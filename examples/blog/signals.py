"""The blog's own signals (the model signals come from tocsin.sqlalchemy)."""

from tocsin import Signal

user_registered = Signal(name="user_registered", doc="A user signed up. Sends user=.")
post_published = Signal(name="post_published", doc="A post went public. Sends post=.")
post_viewed = Signal(name="post_viewed", doc="A post page was read. Sends post_id=.")
post_liked = Signal(name="post_liked", doc="A user liked a post. Sends post=, user=.")
post_changed = Signal(
    name="post_changed",
    doc="A post's page changed (edit, comment, like, delete). Sends post_id=. Shared on the bus: "
    "every app process drops its cached copy.",
)
