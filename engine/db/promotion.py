"""A standby becomes the primary of a new epoch (the claim in the store is the
caller's, ``engine.replication.promote``)."""

from __future__ import annotations

from dataclasses import replace

from engine.db import replicas
from engine.db.checkpointing import Checkpoints
from engine.db.configure import Configure
from engine.db.core import Core, copy_manifest
from engine.db.standbyapply import follow_epoch
from engine.storage import manifest as manifest_format


def become_primary(
    core: Core, checkpoints: Checkpoints, configure: Configure, epoch: int, urls: tuple[str, ...]
) -> None:
    """What the standby applied is checkpointed, the manifest takes ``epoch``, and it
    ships to ``urls`` from now on. Idempotent, so an interrupted promotion can rerun."""
    follow_epoch(core, epoch)
    checkpoints.checkpoint("promote")
    with core.ckpt_lock, core.write_lock:
        if manifest_format.load(core.dir).epoch != epoch:
            manifest_format.install(core.dir, copy_manifest(core.manifest))
    core.role = "primary"
    if core.settings.replicas != urls:
        configure.change(replace(core.settings, replicas=urls))
    else:
        replicas.restart(core)
