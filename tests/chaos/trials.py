"""The kinds of trial. Each drives real processes into one kind of fault at a random
moment, then checks every surviving copy with the ledger (tests/chaos/ledger.py):

``serve-kill``   a primary under ``serve`` at each WAL level, SIGKILLed (sometimes
                 SIGSTOPped first) while HTTP clients write.
``power-loss``   the same, then the files cut back to what was fsynced (the I/O
                 layer's journal), at ``sync`` and ``flush``.
``ingest-mix``   piped ``ingest`` runs, deletes and an expiry at each WAL level, one of
                 them SIGKILLed at a random moment.
``failover``     a primary serving at ``byrl`` or ``sync`` to a local or S3 store (S3
                 through the fault proxy: refused, hanging or slow; a local store that
                 fills up), a live follower killed or frozen; the primary is killed and
                 its site wiped, then the standby promoted (the promotion itself
                 sometimes killed or frozen).
``converge``     piped ingest with deletes, a ``replicate`` service and a follower,
                 killed, frozen and restarted at random; then both sites match by
                 checksum.
``contenders``   one or two standbys promoted while the old primary still writes at
                 ``byrl``: one winner, the old primary fenced, the loser refusing writes.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.chaos.context import Context
from tests.chaos.one_site import ingest_mix, power_loss, serve_kill
from tests.chaos.two_sites import contenders, converge, failover

KINDS: dict[str, Callable[[Context], None]] = {
    "serve-kill": serve_kill,
    "power-loss": power_loss,
    "ingest-mix": ingest_mix,
    "failover": failover,
    "converge": converge,
    "contenders": contenders,
}
# how often each kind is drawn: the cheap ones more, every one often
WEIGHTS = {
    "serve-kill": 3,
    "power-loss": 2,
    "ingest-mix": 2,
    "failover": 3,
    "converge": 1,
    "contenders": 1,
}
