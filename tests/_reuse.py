"""Provoke id() reuse: a new object at the address of a dead one, every time.

CPython's small-object allocator (pymalloc) keeps freed blocks in per-pool
free lists, one list of pools per size class, and serves an allocation from
the first pool of its class with a free block. A dead object's block is
therefore handed out again once the free blocks ahead of it are used up,
provided its pool stays in use: a pool that empties may be given to another
size class, and the address is lost. So:

* the objects are instances of a subclass padded with slots to an unusual
  size (about 208 bytes), so no other object (an iterator, a bound method, a
  frame, what ``gc.collect()`` allocates) competes for the dead block: on
  3.10 and 3.12 a small instance shared its size class with such objects,
  and one of them, kept alive, sometimes took the block for good (and on
  3.13 an instance's own attribute values take 280-byte blocks: the padded
  size must differ from that too);
* :meth:`AddressReuse.new` allocates the object between neighbours of the
  same kind, kept alive until the test ends, so its pool never empties;
* :meth:`AddressReuse.reuse` allocates objects of the same kind, keeping
  every one (freeing them would hand the same blocks out again and again),
  until one lands on the dead address, and fails the test if none does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

NEIGHBOURS = 64  # on each side: more than the blocks of one pool of these sizes
PADDING = 20  # slots: 8 bytes each (about 208-byte objects), see the module docstring
TRIES = 500_000  # each is kept: the free blocks ahead of the dead one, with room to spare


class AddressReuse:
    """Instances of a padded subclass of *cls* made with *args*, and one at a dead one's address."""

    def __init__(self, cls: type, *args: Any) -> None:
        padded = type(
            cls.__name__,
            (cls,),
            {
                "__slots__": tuple(f"_pad{i}" for i in range(PADDING)),
                "__module__": cls.__module__,
                "__qualname__": cls.__qualname__,
            },
        )
        self.make: Callable[[], Any] = lambda: padded(*args)
        self.keep: list[Any] = []

    def new(self) -> Any:
        """A new object whose memory block stays in use after it dies."""
        self.keep.extend(self.make() for _ in range(NEIGHBOURS))
        obj = self.make()
        self.keep.extend(self.make() for _ in range(NEIGHBOURS))
        return obj

    def reuse(self, dead_id: int) -> Any:
        """A new object at *dead_id*, the address of an object made by :meth:`new` that died."""
        # Nothing but the candidates may be allocated in the dead block's size
        # class while this runs: a `for ... in range()` iterator (48 bytes,
        # the size class of a small instance on 3.12) took the dead block for
        # the whole loop whenever it was the first free one. A while loop
        # allocates only ints (another size class) besides the candidates.
        make, keep = self.make, self.keep
        tries = 0
        while tries < TRIES:
            obj = make()
            if id(obj) == dead_id:
                return obj
            keep.append(obj)
            tries += 1
        pytest.fail(f"no new object reused the dead one's address after {TRIES} allocations")
