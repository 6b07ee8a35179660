"""A model of PyTorch's CUDA caching allocator, to predict how far the memory it reserves
(what nvidia-smi shows) outgrows the memory the tensors use.

The rules are those of c10/cuda/CUDACachingAllocator.cpp with its defaults (no
``PYTORCH_CUDA_ALLOC_CONF``): sizes rounded up to 512 B; requests up to 1 MiB come from
2 MiB segments of a small pool; larger ones from a large pool, where a request finds the
smallest cached free block that holds it (best fit), splits off the rest when more than
1 MiB remains, and otherwise gets a new segment from cudaMalloc: 20 MiB for requests under
10 MiB, else the request rounded up to 2 MiB. A freed block merges with free neighbours of
its own segment; segments are never given back (no ``empty_cache``).

That is why a training step's second pass reserves more than its first: the optimizer's
states, allocated lazily at the first ``step()``, land in the holes the activations left,
and the next forward finds the holes it needs taken or cut too small. Fresh processes of
the same program repeat this to the byte (tests/data/gpu_measure_h200_part2.jsonl
repeats two H100 cases on an H200: the same peak reserved, to the byte).

Small-pool requests are not modelled (a few MiB in every measured run).
"""

from __future__ import annotations

from bisect import bisect_left, insort

ROUND = 512  # kMinBlockSize
SMALL = 1 << 20  # kSmallSize: the small pool's largest request
LARGE_BUFFER = 20 << 20  # kLargeBuffer: the segment of a request under kMinLargeAlloc
MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc
ROUND_LARGE = 2 << 20  # kRoundLarge


class AllocatorModel:
    """Best-fit large pool with splitting and merging; ``malloc`` returns a handle for
    ``free``. ``reserved`` / ``allocated`` and their peaks are in bytes."""

    __slots__ = ("_free", "_size", "_isfree", "_prev", "_next", "reserved", "allocated",
                 "peak_reserved", "peak_allocated")

    def __init__(self) -> None:
        # The cached free blocks, sorted by (size, id) packed into one int, so that best
        # fit is one bisect: size in 512-byte units above the low _ID_BITS bits of the id.
        self._free: list[int] = []
        # Per block id: size, whether free, and its neighbours in the same segment (-1: none).
        self._size: list[int] = []
        self._isfree: list[bool] = []
        self._prev: list[int] = []
        self._next: list[int] = []
        self.reserved = 0
        self.allocated = 0
        self.peak_reserved = 0
        self.peak_allocated = 0

    def _block(self, size: int, free: bool, prev: int, nxt: int) -> int:
        bid = len(self._size)
        self._size.append(size)
        self._isfree.append(free)
        self._prev.append(prev)
        self._next.append(nxt)
        if free:
            insort(self._free, (size // ROUND) << _ID_BITS | bid)
        return bid

    def malloc(self, nbytes: int) -> int:
        if nbytes <= SMALL:
            return -1  # small pool: not modelled
        units = -(-nbytes // ROUND)
        size = units * ROUND
        free = self._free
        k = bisect_left(free, units << _ID_BITS)
        if k < len(free):
            key = free.pop(k)
            bid = key & _ID_MASK
            have = (key >> _ID_BITS) * ROUND
            self._isfree[bid] = False
        else:
            have = size if size >= MIN_LARGE_ALLOC else LARGE_BUFFER
            have = -(-have // ROUND_LARGE) * ROUND_LARGE
            self.reserved += have
            if self.reserved > self.peak_reserved:
                self.peak_reserved = self.reserved
            bid = self._block(have, False, -1, -1)
        if have - size > SMALL:
            # Split: the request keeps the front, the rest stays cached as a free block.
            nxt = self._next[bid]
            rest = self._block(have - size, True, bid, nxt)
            if nxt >= 0:
                self._prev[nxt] = rest
            self._next[bid] = rest
            self._size[bid] = size
        self.allocated += self._size[bid]
        if self.allocated > self.peak_allocated:
            self.peak_allocated = self.allocated
        return bid

    def free(self, bid: int) -> None:
        if bid < 0:
            return
        size, isfree, prev, nxt, free = self._size, self._isfree, self._prev, self._next, self._free
        self.allocated -= size[bid]
        isfree[bid] = True
        other = prev[bid]  # merge with a free neighbour before...
        if other >= 0 and isfree[other]:
            del free[bisect_left(free, (size[other] // ROUND) << _ID_BITS | other)]
            isfree[other] = False
            size[bid] += size[other]
            prev[bid] = prev[other]
            if prev[other] >= 0:
                nxt[prev[other]] = bid
        other = nxt[bid]  # ...and after
        if other >= 0 and isfree[other]:
            del free[bisect_left(free, (size[other] // ROUND) << _ID_BITS | other)]
            isfree[other] = False
            size[bid] += size[other]
            nxt[bid] = nxt[other]
            if nxt[other] >= 0:
                prev[nxt[other]] = bid
        insort(free, (size[bid] // ROUND) << _ID_BITS | bid)

    @property
    def fragmentation(self) -> int:
        """Reserved beyond the allocated peak: the figure the estimator adds."""
        return max(0, self.peak_reserved - self.peak_allocated)


_ID_BITS = 32
_ID_MASK = (1 << _ID_BITS) - 1
