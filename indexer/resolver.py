"""The one owner of a run's move and duplicate state, used from one thread only.

For each hashed batch, in order, the resolver decides what every file needs: nothing but
its stat (same content), a move (the content of a photo whose file is gone), or decoding;
and for a decoded file, where its vector comes from: the store (fetched once per batch),
an earlier batch that is embedding the same content, or the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from searchapp.indexer.stages import (
    Claim,
    Decoded,
    Failed,
    Hashed,
    Moved,
    Ready,
    Resolved,
    ToDecode,
    Touched,
    VectorSource,
)
from searchapp.store import STATUS_INDEXED, KnownFile, Store


class Resolver:
    """Move targets, contents on their way to the model, and the photos still gone."""

    def __init__(self, store: Store, model_id: str, missing: Mapping[int, KnownFile]) -> None:
        self.store = store
        self.model_id = model_id
        self._gone = dict(missing)  # photo id -> gone file; a move takes it out
        self._targets = {
            k.content_hash: k
            for k in missing.values()
            if k.content_hash and k.status == STATUS_INDEXED
        }
        self._claims: dict[str, Claim] = {}  # content hash -> the batch embedding it

    def gone(self) -> list[int]:
        """Photo ids whose file is gone and whose content no new path took."""
        return list(self._gone)

    def resolve(self, batch: Sequence[Hashed | Failed]) -> tuple[Claim, list[Resolved]]:
        """Decide what each file of a batch needs; new contents are claimed for this batch."""
        out: list[Resolved | Hashed] = [self._stat_or_move(item) for item in batch]
        need = {h.content_hash for h in out if isinstance(h, Hashed)} - self._claims.keys()
        # one query per batch: the stored vectors these files will reuse
        stored = self.store.vectors_for_hashes(list(need), self.model_id) if need else {}
        claim = Claim()
        return claim, [self._source(item, stored, claim) for item in out]

    def settle(self, claim: Claim, resolved: Sequence[Resolved], ready: list[Ready]) -> list[Ready]:
        """Take a decoded batch back (in order): a content whose decode failed is released.

        A file that was to reuse that content fails with the same reason.
        """
        out = list(ready)
        for i, (item, done) in enumerate(zip(resolved, ready, strict=True)):
            if not isinstance(item, ToDecode):
                continue
            chash = item.content_hash
            if item.embed and isinstance(done, Failed):
                claim.failed[chash] = done.reason
                if self._claims.get(chash) is claim:
                    del self._claims[chash]  # a later batch tries it again
            elif isinstance(done, Decoded) and isinstance(item.source, Claim):
                reason = item.source.failed.get(chash)
                if reason is not None:
                    out[i] = Failed(item.work, reason)
        return out

    def committed(self, claim: Claim) -> None:
        """A batch is in the store: later batches read its contents' vectors from there."""
        for chash in claim.vectors:
            if self._claims.get(chash) is claim:
                del self._claims[chash]

    def _stat_or_move(self, item: Hashed | Failed) -> Resolved | Hashed:
        if isinstance(item, Failed):
            return item
        w, chash = item.work, item.content_hash
        if w.known and w.known.content_hash == chash and w.known.embedded:
            return Touched(w, w.known.id)
        if w.known is None and chash in self._targets:
            old = self._targets.pop(chash)
            self._gone.pop(old.id, None)
            return Moved(w, old.id)
        return item

    def _source(
        self, item: Resolved | Hashed, stored: dict[str, np.ndarray], claim: Claim
    ) -> Resolved:
        if not isinstance(item, Hashed):
            return item
        chash = item.content_hash
        if chash in stored:
            return ToDecode(item.work, chash, stored[chash], embed=False)
        if chash in self._claims:
            return ToDecode(item.work, chash, self._claims[chash], embed=False)
        self._claims[chash] = claim  # the first file of a new content sends it to the model
        return ToDecode(item.work, chash, claim, embed=True)


def vector_of(source: VectorSource, content_hash: str) -> np.ndarray:
    """A content's vector, once the batch that embeds it (if any) has its vectors."""
    return source if isinstance(source, np.ndarray) else source.vectors[content_hash]
