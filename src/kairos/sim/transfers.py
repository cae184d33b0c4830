"""KV copies into replicas on the event heap: one shared link per receiving replica."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from kairos.cluster.transfer_link import TransferLink
from kairos.hardware import Link
from kairos.sim.events import EventQueue, Priority


class TransferLinks:
    """A `TransferLink` into each replica of `indices`, whose next completion waits on the event heap.

    A start moves every pending completion of its link (the bandwidth is shared), so each
    link's pushed event carries a version, and an event older than its link's latest is
    dropped. `done(transfer_id, t)` is called as each transfer lands.
    """

    def __init__(self, events: EventQueue, link: Link, indices: Iterable[int],
                 done: Callable[[Hashable, float], None]) -> None:
        self._events = events
        self._links = {index: TransferLink.for_link(link) for index in indices}
        self._version = dict.fromkeys(self._links, 0)
        self._done = done

    def start(self, index: int, transfer_id: Hashable, nbytes: float, t: float) -> None:
        """Start sending `nbytes` into replica `index` at `t`."""
        self._links[index].start(transfer_id, nbytes, t)
        self._push(index)

    def busy_s(self) -> dict[str, float]:
        """Seconds each replica's link spent sending, by replica index."""
        return {str(index): link.busy_s for index, link in self._links.items()}

    def _push(self, index: int) -> None:
        nxt = self._links[index].next_completion()
        self._version[index] += 1
        if nxt is not None:
            self._events.push(nxt[0], Priority.TRANSFER, self._on_event, (index, self._version[index]), key=index)

    def _on_event(self, t: float, payload: tuple[int, int]) -> None:
        index, version = payload
        if version != self._version[index]:
            return  # a later start moved this link's next completion
        for done_s, transfer_id in self._links[index].advance(t):
            self._done(transfer_id, done_s)
        self._push(index)
