"""Window arithmetic and the deterministic per-uid data assignment."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.windows import (
    Population,
    assigned_samples,
    page_of,
    random_samples,
    window_end_block,
    window_of,
    window_start_block,
)

# Golden vectors: every node must compute exactly these, forever (a change forks the subnet).
GOLDEN_ASSIGNED = [
    ((b"swarmtrain", 0, 0, 8, 1000), [970, 540, 533, 428, 70, 157, 780, 291]),
    ((b"swarmtrain", 7, 3, 5, 100_000), [17410, 85598, 51745, 29221, 99224]),
    ((b"seed", 123456, 255, 6, 10**9), [705783313, 849049213, 287371160, 775812651, 360731247, 854274813]),
    ((b"x", 1, 2, 3, 3), [1, 2, 0]),
]
GOLDEN_PAGED = [
    ((b"swarmtrain", 0, 0, 8, Population(1000, page=100)), [472, 402, 492, 428, 449, 403, 471, 443]),
    ((b"swarmtrain", 5, 2, 6, Population(1050, page=200)), [111, 1, 12, 178, 190, 25]),
]
GOLDEN_RANDOM = [
    ((b"swarmtrain", 7, 3, 5, 100_000, b"entropy"), [24433, 78257, 39616, 86939, 7796]),
    ((b"x", 0, 0, 2, 5, b"e"), [2, 0]),
]


@pytest.mark.parametrize("args, expected", GOLDEN_ASSIGNED)
def test_assigned_golden_vectors(args: tuple, expected: list[int]) -> None:
    assert assigned_samples(*args) == expected


@pytest.mark.parametrize("args, expected", GOLDEN_RANDOM)
def test_random_golden_vectors(args: tuple, expected: list[int]) -> None:
    assert random_samples(*args) == expected


@pytest.mark.parametrize(
    "block, bpw, window, start, end",
    [(0, 20, 0, 0, 19), (19, 20, 0, 0, 19), (20, 20, 1, 20, 39), (45, 20, 2, 40, 59), (7, 1, 7, 7, 7)],
)
def test_window_boundaries(block: int, bpw: int, window: int, start: int, end: int) -> None:
    assert window_of(block, bpw) == window
    assert window_start_block(window, bpw) == start
    assert window_end_block(window, bpw) == end


@given(block=st.integers(0, 10**12), bpw=st.integers(1, 10_000))
def test_block_lies_within_its_window(block: int, bpw: int) -> None:
    w = window_of(block, bpw)
    assert window_start_block(w, bpw) <= block <= window_end_block(w, bpw)
    assert window_of(window_end_block(w, bpw) + 1, bpw) == w + 1


def test_deterministic_and_sensitive_to_every_input() -> None:
    base = (b"seed", 4, 9, 16, 50_000)
    ref = assigned_samples(*base)
    assert assigned_samples(*base) == ref
    for changed in [(b"seeD", 4, 9, 16, 50_000), (b"seed", 5, 9, 16, 50_000),
                    (b"seed", 4, 10, 16, 50_000), (b"seed", 4, 9, 16, 50_001)]:
        assert assigned_samples(*changed) != ref


@given(
    window=st.integers(0, 10**9), uid=st.integers(0, 300), count=st.integers(0, 64),
    population=st.integers(1, 10**7),
)
@settings(max_examples=60, deadline=None)
def test_assigned_are_distinct_and_in_range(window: int, uid: int, count: int, population: int) -> None:
    count = min(count, population)
    out = assigned_samples(b"s", window, uid, count, population)
    assert len(out) == count == len(set(out))
    assert all(0 <= i < population for i in out)


def test_uids_are_disjoint_while_population_allows() -> None:
    count, population = 40, 256 * 40
    seen: set[int] = set()
    for uid in range(256):
        out = set(assigned_samples(b"s", 3, uid, count, population))
        assert not out & seen
        seen |= out
    assert seen == set(range(population))  # the slots tile the whole permutation


def test_full_population_is_a_permutation() -> None:
    for population in (1, 2, 3, 5, 17, 64, 65, 1000):
        assert sorted(assigned_samples(b"s", 1, 0, population, population)) == list(range(population))


def test_assignment_is_roughly_uniform() -> None:
    population, buckets = 1000, 10
    counts: collections.Counter[int] = collections.Counter()
    for window in range(200):
        for i in assigned_samples(b"u", window, window % 7, 50, population):
            counts[i * buckets // population] += 1
    expected = 200 * 50 / buckets
    assert all(abs(counts[b] - expected) < 0.1 * expected for b in range(buckets)), counts


@given(uid=st.integers(0, 100), count=st.integers(0, 30), population=st.integers(60, 5000),
       entropy=st.binary(max_size=32))
@settings(max_examples=60, deadline=None)
def test_random_is_disjoint_from_assigned(uid: int, count: int, population: int, entropy: bytes) -> None:
    own = set(assigned_samples(b"s", 2, uid, count, population))
    rnd = random_samples(b"s", 2, uid, count, population, entropy)
    assert len(rnd) == count == len(set(rnd))
    assert not own & set(rnd)
    assert all(0 <= i < population for i in rnd)


def test_random_depends_on_entropy_and_exact_fit_works() -> None:
    a = random_samples(b"s", 2, 1, 20, 10_000, b"a")
    assert a == random_samples(b"s", 2, 1, 20, 10_000, b"a")
    assert a != random_samples(b"s", 2, 1, 20, 10_000, b"b")
    own = assigned_samples(b"s", 2, 1, 5, 10)
    assert sorted(own + random_samples(b"s", 2, 1, 5, 10, b"e")) == list(range(10))


@pytest.mark.parametrize(
    "args, match",
    [
        ((b"s", 0, 0, 11, 10), "exceeds the population"),
        ((b"s", -1, 0, 1, 10), "window"),
        ((b"s", 0, -2, 1, 10), "uid"),
        ((b"s", 0, 0, -1, 10), "count"),
        ((b"s", 0, 0, 0, 0), "population"),
        (("s", 0, 0, 1, 10), "seed must be bytes"),
        ((b"s", 1.5, 0, 1, 10), "window must be an int"),
    ],
)
def test_assigned_rejects_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        assigned_samples(*args)


def test_random_excludes_a_larger_assignment() -> None:
    own = set(assigned_samples(b"s", 3, 2, 160, 400))
    for entropy in (b"a", b"b", b"c"):
        rnd = random_samples(b"s", 3, 2, 8, 400, entropy, assigned_count=160)
        assert len(set(rnd)) == 8 and not own & set(rnd)
    assert random_samples(b"s", 3, 2, 5, 400, b"e", assigned_count=5) == random_samples(b"s", 3, 2, 5, 400, b"e")
    with pytest.raises(ValueError, match="disjoint from 396 assigned"):
        random_samples(b"s", 3, 2, 5, 400, b"e", assigned_count=396)


def test_numpy_and_torch_integers_are_accepted() -> None:
    import numpy as np
    import torch

    ref = assigned_samples(b"s", 5, 7, 10, 1000)
    assert assigned_samples(b"s", np.int64(5), np.uint16(7), np.int32(10), np.int64(1000)) == ref
    assert assigned_samples(b"s", torch.tensor(5), 7, 10, 1000) == ref
    assert window_of(np.int64(45), 20) == 2 and isinstance(window_of(np.int64(45), 20), int)
    with pytest.raises(ValueError, match="got bool"):
        assigned_samples(b"s", True, 7, 10, 1000)


def test_random_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="disjoint"):
        random_samples(b"s", 0, 0, 6, 10, b"e")
    with pytest.raises(ValueError, match="entropy"):
        random_samples(b"s", 0, 0, 1, 10, "e")  # type: ignore[arg-type]


@pytest.mark.parametrize("fn, args", [(window_of, (-1, 20)), (window_of, (5, 0)),
                                      (window_start_block, (-3, 20)), (window_end_block, (1, 0))])
def test_window_functions_reject_bad_arguments(fn, args: tuple) -> None:
    with pytest.raises(ValueError):
        fn(*args)


def test_docstring_examples() -> None:
    import doctest

    import protocol.windows

    assert doctest.testmod(protocol.windows).failed == 0


def test_unassigned_samples_avoid_every_submitters_assignment() -> None:
    from protocol.windows import unassigned_samples

    seed, window, count, population = b"s", 3, 20, 2000
    taken = {i for uid in range(10) for i in assigned_samples(seed, window, uid, count, population)}
    drawn = unassigned_samples(seed, window, 50, population, b"e1", reserved_slots=10 * count)
    assert len(set(drawn)) == 50 and not set(drawn) & taken
    assert drawn == unassigned_samples(seed, window, 50, population, b"e1", reserved_slots=10 * count)
    assert drawn != unassigned_samples(seed, window, 50, population, b"e2", reserved_slots=10 * count)
    tiny = unassigned_samples(seed, window, 50, 60, b"e1", reserved_slots=40)  # too few free: whole population
    assert len(set(tiny)) == 50 and max(tiny) < 60


@pytest.mark.parametrize("args, expected", GOLDEN_PAGED)
def test_paged_golden_vectors(args: tuple, expected: list[int]) -> None:
    assert assigned_samples(*args) == expected
    assert random_samples(b"swarmtrain", 5, 2, 4, Population(1050, page=200), b"entropy",
                          assigned_count=6) == [871, 931, 879, 987]


def test_page_one_is_the_plain_assignment() -> None:
    for args, expected in GOLDEN_ASSIGNED:
        seed, window, uid, count, population = args
        assert assigned_samples(seed, window, uid, count, Population(population)) == expected
    assert page_of(1000) == 1 and page_of(Population(1000, page=7)) == 7


@given(
    window=st.integers(0, 10**6), population=st.integers(1, 3000), page=st.integers(1, 700),
)
@settings(max_examples=40, deadline=None)
def test_paged_is_a_permutation(window: int, population: int, page: int) -> None:
    pop = Population(population, page=page)
    assert sorted(assigned_samples(b"s", window, 0, population, pop)) == list(range(population))


@given(uid=st.integers(0, 40), count=st.integers(1, 300), page=st.integers(1, 500), window=st.integers(0, 99))
@settings(max_examples=60, deadline=None)
def test_a_uid_touches_few_pages(uid: int, count: int, page: int, window: int) -> None:
    pop = Population(20 * page + page // 2, page=page)  # 20 full pages and a partial one
    count = min(count, int(pop))
    out = assigned_samples(b"s", window, uid, count, pop)
    assert len(set(out)) == count
    # a run of ``count`` pages' worth touches one partial page more at most; when the uid's run
    # wraps past the end of the population it is two runs, and may touch one more
    wraps = (uid * count) % int(pop) + count > int(pop)
    assert len({i // page for i in out}) <= -(-count // page) + (2 if wraps else 1)


def test_paged_uids_are_disjoint_and_pages_spread_over_windows() -> None:
    pop, count = Population(64 * 10, page=64), 10
    seen: set[int] = set()
    for uid in range(64):
        out = set(assigned_samples(b"s", 3, uid, count, pop))
        assert not out & seen
        seen |= out
    pages = {assigned_samples(b"s", w, 0, count, pop)[0] // 64 for w in range(60)}
    assert len(pages) >= 8  # windows move the uid across shards


def test_paged_random_is_disjoint_and_local() -> None:
    pop = Population(5000, page=500)
    own = set(assigned_samples(b"s", 2, 4, 100, pop))
    rnd = random_samples(b"s", 2, 4, 32, pop, b"secret", assigned_count=100)
    assert len(set(rnd)) == 32 and not own & set(rnd)
    assert len({i // 500 for i in rnd}) <= 2


def test_population_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="page"):
        Population(10, page=0)
    with pytest.raises(ValueError, match="population"):
        Population(-1)


def test_unassigned_samples_of_a_sharded_dataset_touch_few_shards() -> None:
    from protocol.windows import Population, unassigned_samples

    population = Population(100_000, page=1000)
    drawn = unassigned_samples(b"s", 1, 160, population, b"e", reserved_slots=8 * 160)
    assert len(set(drawn)) == 160 and len({i // 1000 for i in drawn}) <= 2
    taken = {i for uid in range(8) for i in assigned_samples(b"s", 1, uid, 160, population)}
    assert not set(drawn) & taken
