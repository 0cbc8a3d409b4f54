"""Windows of blocks, and which data samples each miner trains on in a window.

A *window* is ``blocks_per_window`` consecutive blocks: ``window = block // blocks_per_window``.

Data assignment
---------------
Every node must compute the same assignment from public inputs only, on any platform and
any numpy/torch version, so it is built from sha256 alone:

* For a window ``w`` the subnet seed, ``w`` and the population size key a pseudo-random
  *permutation* ``P_w`` of ``[0, population)``: a balanced Feistel network (6 rounds,
  round function = sha256 of key, round and half-block) on the smallest even bit width
  covering the population, made exact by *cycle walking* (re-encrypt until the value
  falls inside the population; the domain is under 4x the population, so few steps).
* Miner ``uid`` gets the slots ``uid*count ... uid*count + count - 1`` (mod population)
  of that permutation: ``assigned = [P_w(s) for s in slots]``. Distinct uids therefore
  get disjoint samples as long as ``(max_uid + 1) * count <= population``; beyond that
  slots wrap around and some uids share samples (unavoidable).
* ``random_samples`` uses a second permutation additionally keyed by ``uid`` and by
  ``entropy`` (a secret the miner cannot know in advance) and takes, in order, the first
  ``count`` values that are not among the uid's assigned samples (``assigned_count`` of
  them: a validator drawing 8 evaluation samples excludes the miner's whole assignment).
* ``unassigned_samples`` draws, with ``entropy``, from the slots past every submitting
  uid's assignment: samples nobody trained on this window, one batch shared by all the
  miners a validator evaluates.

Pages (sharded datasets)
------------------------
A dataset cut into shards passes its sample count as a ``Population`` whose ``page`` is
the number of samples in one full shard. The permutation then works on pages: slot
``s`` lies in slot-page ``q = s // page``; full pages are permuted among themselves
(``page_index = F_w(q)``) and each page's samples by their own permutation
(``page_index * page + G_{w,page_index}(s % page)``); the last, partial page (the
last shard of a split) maps onto itself. A uid's ``count`` consecutive slots therefore
fall in ``ceil(count / page) + 1`` pages at most, so a miner needs only that many shards
per window. ``random_samples`` pages its own permutation the same way (a validator's
random draw touches few shards). A plain ``int`` population is page 1: the permutation
described above, unchanged.

Example:
    >>> window_of(45, 20), window_start_block(2, 20), window_end_block(2, 20)
    (2, 40, 59)
    >>> len(assigned_samples(b"seed", window=2, uid=3, count=4, population=1000))
    4
"""

from __future__ import annotations

import hashlib
import operator

_ASSIGN_DOMAIN = b"swarmtrain/assign/v1"
_RANDOM_DOMAIN = b"swarmtrain/random/v1"
_PAGE_DOMAIN = b"swarmtrain/page/v1"
_ROUNDS = 6
_MAX_INDEX = 2**63 - 1  # indices and windows must fit a signed 64-bit integer


class Population(int):
    """A sample count that also says how many consecutive samples form a page (one shard).

    It is an ``int`` (so code that only counts keeps working); ``assigned_samples`` and
    ``random_samples`` read ``page`` to keep each uid's samples within few pages.

    Example:
        >>> p = Population(1000, page=250)
        >>> int(p), p.page, page_of(p), page_of(1000)
        (1000, 250, 250, 1)
    """

    page: int

    def __new__(cls, count: int, page: int = 1) -> Population:
        obj = super().__new__(cls, _index("population", count))
        obj.page = _positive("page", page)
        return obj

    def __repr__(self) -> str:
        return f"Population({int(self)}, page={self.page})"


def page_of(population: int) -> int:
    """The page size a population carries (1 for a plain int)."""
    return population.page if isinstance(population, Population) else 1


def window_of(block: int, blocks_per_window: int) -> int:
    """The window a block belongs to."""
    return _index("block", block) // _positive("blocks_per_window", blocks_per_window)


def window_start_block(window: int, blocks_per_window: int) -> int:
    """First block of a window."""
    return _index("window", window) * _positive("blocks_per_window", blocks_per_window)


def window_end_block(window: int, blocks_per_window: int) -> int:
    """Last block of a window (inclusive)."""
    return window_start_block(window, blocks_per_window) + blocks_per_window - 1


def assigned_samples(seed: bytes, window: int, uid: int, count: int, population: int) -> list[int]:
    """The ``count`` sample indices in ``[0, population)`` that ``uid`` trains on in ``window``.

    Indices within one call are distinct; distinct uids get disjoint sets while
    ``(uid + 1) * count <= population``.
    """
    page = page_of(population)
    window, uid, count, population = _check_draw(seed, window, uid, count, population)
    perm = _permutation(_key(_ASSIGN_DOMAIN, seed, window, population), population, page)
    first = (uid * count) % population
    return [perm((first + j) % population) for j in range(count)]


def random_samples(
    seed: bytes,
    window: int,
    uid: int,
    count: int,
    population: int,
    entropy: bytes,
    *,
    assigned_count: int | None = None,
) -> list[int]:
    """``count`` distinct indices, unpredictable without ``entropy``, disjoint from uid's assigned ones.

    The excluded set is ``assigned_samples(seed, window, uid, assigned_count, population)``;
    ``assigned_count`` defaults to ``count`` but a validator drawing a few evaluation samples
    passes the miner's full per-window count. ``count + assigned_count <= population``.
    """
    paged = population  # keeps its page size for the assignment it must exclude
    window, uid, count, population = _check_draw(seed, window, uid, count, population)
    assigned_count = count if assigned_count is None else _index("assigned_count", assigned_count)
    if not isinstance(entropy, bytes | bytearray):
        raise ValueError(f"entropy must be bytes, got {type(entropy).__name__}")
    if count + assigned_count > population:
        raise ValueError(
            f"cannot draw {count} random samples disjoint from {assigned_count} assigned ones "
            f"out of a population of {population}"
        )
    excluded = set(assigned_samples(seed, window, uid, assigned_count, paged))
    key = _key(_RANDOM_DOMAIN, seed, window, population, uid.to_bytes(8, "big"), bytes(entropy))
    perm = _permutation(key, population, page_of(paged))
    picked: list[int] = []
    slot = 0
    while len(picked) < count:  # ends: at most population slots, and enough are free
        value = perm(slot)
        if value not in excluded:
            picked.append(value)
        slot += 1
    return picked


def unassigned_samples(seed: bytes, window: int, count: int, population: int, entropy: bytes,
                       *, reserved_slots: int) -> list[int]:
    """``count`` distinct samples that no uid below ``reserved_slots // per-uid count`` trains
    on in ``window``, unpredictable without ``entropy``: the validator's shared random batch.

    They are the assignment permutation's values at ``count`` consecutive slots starting at
    ``reserved_slots + offset``, the offset drawn from sha256(``entropy``) among the
    unreserved slots (consecutive slots keep a sharded dataset's draw on few shards). When
    fewer than ``count`` slots are unreserved (a tiny dataset), the whole population is used.
    """
    page = page_of(population)
    window, _, count, population = _check_draw(seed, window, 0, count, population)
    reserved = _index("reserved_slots", reserved_slots)
    if not isinstance(entropy, bytes | bytearray):
        raise ValueError(f"entropy must be bytes, got {type(entropy).__name__}")
    if population - reserved < count:
        reserved = 0
    choices = population - reserved - count + 1
    digest = hashlib.sha256(_key(_RANDOM_DOMAIN, seed, window, population, b"shared", bytes(entropy))).digest()
    start = reserved + int.from_bytes(digest[:8], "big") % choices
    assign = _permutation(_key(_ASSIGN_DOMAIN, seed, window, population), population, page)
    return [assign(start + j) for j in range(count)]


def _permutation(key: bytes, population: int, page: int) -> _FeistelPermutation | _PagedPermutation:
    """The plain permutation for page 1 (unchanged since v1), else the paged one."""
    if page == 1:
        return _FeistelPermutation(key, population)
    return _PagedPermutation(key, population, page)


class _PagedPermutation:
    """A keyed bijection of ``[0, population)`` that keeps pages of ``page`` samples together.

    Full pages are permuted among themselves and within; the partial last page maps onto
    itself (within-page permutation only).
    """

    def __init__(self, key: bytes, population: int, page: int) -> None:
        self._key, self._page = key, page
        self._full_pages = population // page
        self._tail = population - self._full_pages * page
        self._pages = _FeistelPermutation(_page_key(key, -1), self._full_pages) if self._full_pages else None
        self._inner: dict[int, _FeistelPermutation] = {}

    def __call__(self, index: int) -> int:
        slot_page, offset = divmod(index, self._page)
        if self._pages is not None and slot_page < self._full_pages:
            target = self._pages(slot_page)
            return target * self._page + self._within(target, self._page)(offset)
        base = self._full_pages * self._page
        return base + self._within(self._full_pages, self._tail)(index - base)

    def _within(self, page_index: int, size: int) -> _FeistelPermutation:
        if page_index not in self._inner:
            self._inner[page_index] = _FeistelPermutation(_page_key(self._key, page_index), size)
        return self._inner[page_index]


def _page_key(key: bytes, page_index: int) -> bytes:
    """Key of the page permutation (``page_index`` -1) or of one page's inner permutation."""
    return hashlib.sha256(_PAGE_DOMAIN + key + page_index.to_bytes(8, "big", signed=True)).digest()


class _FeistelPermutation:
    """A keyed bijection of ``[0, population)`` (Feistel network + cycle walking)."""

    def __init__(self, key: bytes, population: int) -> None:
        self._key = key
        self._population = population
        half_bits = max(1, ((population - 1).bit_length() + 1) // 2)
        self._half_bits = half_bits
        self._half_mask = (1 << half_bits) - 1

    def __call__(self, index: int) -> int:
        value = self._encrypt(index)
        while value >= self._population:  # cycle walking: stays a bijection on the population
            value = self._encrypt(value)
        return value

    def _encrypt(self, value: int) -> int:
        left, right = value >> self._half_bits, value & self._half_mask
        for rnd in range(_ROUNDS):
            left, right = right, left ^ self._round(rnd, right)
        return (left << self._half_bits) | right

    def _round(self, rnd: int, half: int) -> int:
        digest = hashlib.sha256(self._key + bytes([rnd]) + half.to_bytes(8, "big")).digest()
        return int.from_bytes(digest[:8], "big") & self._half_mask


def _key(domain: bytes, seed: bytes, window: int, population: int, *extra: bytes) -> bytes:
    """sha256 over length-prefixed fields, so no two field lists collide."""
    h = hashlib.sha256(domain)
    for part in (seed, window.to_bytes(8, "big"), population.to_bytes(8, "big"), *extra):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def _check_draw(seed: bytes, window: int, uid: int, count: int, population: int) -> tuple[int, int, int, int]:
    """Validated ``(window, uid, count, population)`` as plain ints."""
    if not isinstance(seed, bytes | bytearray):
        raise ValueError(f"seed must be bytes, got {type(seed).__name__}")
    checked = (_index("window", window), _index("uid", uid), _index("count", count),
               _positive("population", population))
    if checked[2] > checked[3]:
        raise ValueError(f"count {count} exceeds the population of {population} samples")
    return checked


def _index(name: str, value: int) -> int:
    """``value`` as a plain int in [0, 2**63); numpy/torch integer scalars are accepted."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {type(value).__name__}") from None
    if not 0 <= number <= _MAX_INDEX:
        raise ValueError(f"{name} must be in [0, 2**63), got {number}")
    return number


def _positive(name: str, value: int) -> int:
    number = _index(name, value)
    if number == 0:
        raise ValueError(f"{name} must be positive, got 0")
    return number
