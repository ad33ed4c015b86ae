"""Job identity: the canonical encoding of a job and its id (issue 2, "Job identity and digest").

Every host must give every job the same id whatever its Python version, platform, hash seed
or pool order, so these tests pin the encoding itself, not just its self-consistency.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import re
import sys
from fractions import Fraction
from pathlib import Path, PurePosixPath

import pytest

from jobsplit import UserError
from jobsplit.pool import ID_BYTES, JobPool, call_args, identity_text, job_id


def same_id(a, b) -> bool:
    return job_id(a) == job_id(b)


# --- canonical encoding ------------------------------------------------------------------


def test_dict_key_order_does_not_matter():
    """A kwargs job is the same job whatever order its keys were written in (nested too)."""
    a = {"b": 1, "a": {"y": [1, 2], "x": "s"}, "c": None}
    b = {"c": None, "a": {"x": "s", "y": [1, 2]}, "b": 1}
    assert list(a) != list(b)
    assert identity_text(a, 0) == identity_text(b, 0) == '{"a":{"x":"s","y":[1,2]},"b":1,"c":null}'
    assert same_id(a, b)


def test_tuple_and_list_arguments_encode_equally():
    """Inside a job, a tuple argument and a list argument with the same items are the same."""
    assert identity_text((1, (2, 3), "x"), 0) == identity_text((1, [2, 3], "x"), 0) == '[1,[2,3],"x"]'
    assert same_id((1, (2, (3, 4))), (1, [2, [3, 4]]))
    assert same_id({"grid": (1, 2)}, {"grid": [1, 2]})


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((1,), (1.0,)),
        ((1,), (True,)),
        ((1.0,), (True,)),
        ((0,), (False,)),
        ((0,), (None,)),
        ((1,), ("1",)),
        ((0.0,), (-0.0,)),
        ((1, 2), ([1, 2],)),  # two arguments vs one list argument
        ((), ({},)),
        ({}, ()),
        ({"a": 1}, ("a", 1)),
    ],
)
def test_distinct_values_have_distinct_ids(a, b):
    """Values that differ in JSON (1 vs 1.0 vs true, arity, args vs kwargs) are different jobs."""
    assert identity_text(a, 0) != identity_text(b, 0)
    assert not same_id(a, b)


def test_scalar_job_is_the_one_tuple_job():
    """A bare value is the single positional argument, like map() passes it."""
    assert call_args(5) == ((5,), {})
    assert call_args([1, 2]) == (([1, 2],), {})
    assert same_id(5, (5,))
    assert same_id("text", ("text",))
    assert same_id([1, 2], ([1, 2],))
    assert not same_id([1, 2], (1, 2))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (1 / 3, "0.3333333333333333"),
        (1e-07, "1e-07"),
        (1e22, "1e+22"),
        (2.5, "2.5"),
        (-0.0, "-0.0"),
        (123456789.125, "123456789.125"),
        (2**64 + 1, "18446744073709551617"),  # ints are exact, not floats
    ],
)
def test_numbers_encode_as_their_shortest_repr(value, text):
    """Floats encode as the shortest repr that round-trips (stable across versions), ints exactly."""
    assert identity_text((value,), 0) == f"[{text}]"
    assert identity_text(((value,),), 0) == f"[[{text}]]"  # the slow path agrees with the fast one


def test_unicode_is_encoded_literally_as_utf8():
    """Non-ASCII text is not escaped and not normalized (é and e + combining accent differ)."""
    assert identity_text(("ü日🧪",), 0) == '["ü日🧪"]'
    assert not same_id(("\u00e9",), ("e\u0301",))


def test_int_and_float_subclasses_encode_as_their_value():
    """An IntEnum or a float subclass encodes like the plain number it stands for."""

    class Size(enum.IntEnum):
        BIG = 7

    class Meters(float):
        pass

    assert same_id((Size.BIG,), (7,))
    assert same_id(({"s": [Size.BIG]},), ({"s": [7]},))
    assert same_id(([Meters(2.5)],), ([2.5],))


# --- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("job", [(1, 2.5, "a"), {"k": [1, 2]}, "scalar", (), {}])
def test_id_is_128_bits_shown_as_32_hex(job):
    """An id is 16 bytes of SHA-256; .hex() gives the 32 lowercase hex characters shown everywhere."""
    raw = job_id(job)
    assert isinstance(raw, bytes) and len(raw) == ID_BYTES == 16
    assert re.fullmatch(r"[0-9a-f]{32}", raw.hex())
    pool = JobPool([job])
    assert pool.ids_hex([0]) == [raw.hex()]


def test_id_is_sha256_of_the_documented_canonical_text():
    """The id recipe: SHA-256 over a domain line and the canonical JSON, first 16 bytes."""
    job = {"b": [1, (2.0, "ü")], "a": None}
    text = '{"a":null,"b":[1,[2.0,"ü"]]}'
    assert identity_text(job, 0) == text
    assert job_id(job) == hashlib.sha256(b"jobsplit/job/v1\n" + text.encode("utf-8")).digest()[:16]


GOLDEN_IDS = [
    ((1, 2.5, "a"), "9a52960b48f2453e1ec34569408b10d4"),
    ({"n": 3, "mode": "fast", "eps": 1e-07}, "892cce6d4b857e959eada2f6f94b455f"),
    (("\u00fc\u65e5\U0001f9ea", [1, [2, None]], True), "36bffa60ae21b1d10257d379cb51db3c"),
    (0.1, "bfd93b4d77d149f852856eb0d2fae7c4"),
    ((), "9241701fc4041f3facf069a5759b2442"),
    ({}, "1ce8c478239d4e37a6620ae86d032af2"),
]


@pytest.mark.parametrize(("job", "expected"), GOLDEN_IDS)
def test_golden_ids(job, expected):
    """Fixed jobs have fixed ids: any change to the encoding or hashing fails here."""
    assert job_id(job).hex() == expected
    assert job_id(job, position=17).hex() == expected  # the position is not part of the id


# --- errors --------------------------------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("bad_job", "where", "type_name"),
    [
        ((1, object()), "pool[2][1]", "object"),
        (({1, 2},), "pool[2][0]", "set"),
        ((b"raw",), "pool[2][0]", "bytes"),
        (({1: "one"},), "pool[2][0]", "int"),
        ({"a": [1, frozenset()]}, "pool[2]['a'][1]", "frozenset"),
        ({3: "x"}, "pool[2]", "int"),
        (Opaque(), "pool[2]", "Opaque"),
        ((1, complex(1, 2)), "pool[2][1]", "complex"),
    ],
)
def test_non_json_like_argument_is_a_user_error(bad_job, where, type_name):
    """A value with no stable encoding is refused, naming its position in the pool and its type."""
    with pytest.raises(UserError) as info:
        JobPool([(0,), (1,), bad_job, (3,)])
    message = str(info.value)
    assert where in message
    assert type_name in message
    assert "key=" in message  # and it says how to get around it
    assert "\n" not in message


def test_a_dataclass_or_an_enum_in_the_pool_is_refused_saying_what_gives_an_encoding():
    @dataclasses.dataclass
    class Params:
        n: int

    class Mode(enum.Enum):
        FAST = "fast"

    with pytest.raises(UserError, match=r"pool\[0\] is a .*Params, .* or pass key=dataclasses\.asdict to jobsplit\.main, which identifies each job by its fields$"):
        JobPool([Params(1)])
    with pytest.raises(UserError, match=r"pool\[0\]\[1\] is a .*Mode, .* \(its \.value or \.name gives one\) or pass key= to jobsplit\.main$"):
        JobPool([(1, Mode.FAST)])
    assert list(JobPool([Params(1), Params(2)], key=dataclasses.asdict).ids) == [job_id({"n": 1}), job_id({"n": 2})]


def test_a_path_is_its_text_to_the_id():
    """``sorted(Path("data").glob("*.csv"))`` makes a pool: a path's id is its text's, in any
    place, so a path and its text are one job; a path of bytes has no text and is refused."""
    assert identity_text((PurePosixPath("data/a.csv"), 1), 0) == '["data/a.csv",1]'
    assert job_id(Path("data/a.csv")) == job_id("data/a.csv") == job_id(PurePosixPath("data/a.csv"))
    assert job_id({"input": Path("a"), "n": [Path("b")]}) == job_id({"input": "a", "n": ["b"]})
    with pytest.raises(UserError, match=r"pool\[0\] and pool\[1\] are the same job"):
        JobPool([Path("data/a.csv"), "data/a.csv"])

    class BytesPath:
        def __fspath__(self):
            return b"raw"

    with pytest.raises(UserError, match=r"pool\[0\] is a .*BytesPath, which has no stable encoding"):
        JobPool([BytesPath()])


def test_an_os_scandir_entry_is_refused_saying_to_pass_its_path(tmp_path):
    """``pool = list(os.scandir("data"))`` was accepted (a DirEntry is a path, its id its path's),
    and every job then failed: "cannot pickle 'posix.DirEntry' object", as a worker gets the
    pool's values as they are. Refused up front, anywhere in a job."""
    (tmp_path / "a.csv").touch()
    (entry,) = os.scandir(tmp_path)
    sentence = r"is an os\.DirEntry \(from os\.scandir\), which cannot be sent to a worker process; pass its path instead: entry\.path, or pathlib\.Path\(entry\)$"
    for pool, where in (([entry], r"pool\[0\]"), ([(1, entry)], r"pool\[0\]\[1\]"), ([{"files": [entry]}], r"pool\[0\]\['files'\]\[0\]")):
        with pytest.raises(UserError, match=rf"^{where} {sentence}"):
            JobPool(pool)
    assert JobPool([entry.path]).ids_hex([0]) == JobPool([Path(entry)]).ids_hex([0])


def test_an_array_in_the_pool_is_refused_saying_that_tolist_gives_its_values():
    """``jobsplit.main(job, df.to_numpy())``: each job is a NumPy row."""
    numpy = pytest.importorskip("numpy")
    with pytest.raises(UserError, match=r"pool\[0\] is a numpy\.ndarray, .*\(its \.tolist\(\) gives its values as a list\)"):
        JobPool(numpy.array([[0.1, 1.0], [0.2, 2.0]]))


def test_numpy_bools_are_their_python_values_and_other_scalars_say_item():
    """``pool = [(x, x > 0.5) for x in array]``: NumPy's bool was refused (the README says NumPy's
    scalars are their Python values; its ints and floats were), with the hint for arrays."""
    numpy = pytest.importorskip("numpy")
    values = numpy.array([0.2, 0.7])
    pool = JobPool([(float(x), x > 0.5) for x in values])
    assert pool.ids_hex(range(2)) == JobPool([(0.2, False), (0.7, True)]).ids_hex(range(2))
    with pytest.raises(UserError, match=r"pool\[0\] is a numpy\.datetime64, .*\(its \.item\(\) gives its Python value\)"):
        JobPool([numpy.datetime64("2026-12-07")])


def test_key_makes_non_json_like_pools_acceptable():
    """With key=, the key's value is what identifies a job, so any job object is fine."""

    class Params:
        def __init__(self, name):
            self.name = name

    jobs = [Params("a"), {1, 2}, b"\x00raw", {1: "one", 2: "two"}]

    def key(job):
        if isinstance(job, Params):
            return ["params", job.name]
        if isinstance(job, (set, frozenset)):
            return ["set", sorted(job)]
        if isinstance(job, bytes):
            return ["bytes", job.hex()]
        return ["dict", sorted(job.items())]

    pool = JobPool(jobs, key=key)
    assert len(pool) == 4 and len(set(pool.ids)) == 4
    assert pool.identity_text(0) == '["params","a"]'
    assert pool.identity_text(3) == '["dict",[[1,"one"],[2,"two"]]]'
    assert pool.ids[1] == job_id(("set", [1, 2]))  # a key hashes like a job of that value
    # Without the key, the same pool is refused.
    with pytest.raises(UserError, match=r"pool\[0\].*Params"):
        JobPool(jobs)


def test_key_errors_name_the_position():
    """A key function that fails, or returns something unencodable, is reported at its job."""
    with pytest.raises(UserError, match=r"key\(pool\[1\]\) raised ZeroDivisionError"):
        JobPool([1, 0], key=lambda job: 1 / job)
    with pytest.raises(UserError, match=r"key\(pool\[0\]\).*set"):
        JobPool([1], key=lambda job: {job})


def test_key_can_tell_otherwise_equal_jobs_apart():
    """Duplicates are judged by the key when key= is given."""
    jobs = [(1, [2]), (1, (2,))]  # the same job by value (tuple and list encode equally)
    with pytest.raises(UserError, match=r"pool\[0\] and pool\[1\]"):
        JobPool(jobs)
    pool = JobPool(jobs, key=lambda job: [type(job[1]).__name__, job])
    assert len(set(pool.ids)) == 2
    # ...and a key that maps two different jobs to one value makes them duplicates.
    with pytest.raises(UserError, match=r"pool\[0\] and pool\[1\]"):
        JobPool([(1, "a"), (1, "b")], key=lambda job: job[0])


@pytest.mark.parametrize(
    ("pool", "first", "second"),
    [
        ([(1,), (2,), (1,)], 0, 2),
        ([(0,), (1, [2]), (5,), (1, (2,))], 1, 3),  # tuple vs list argument: the same job
        ([{"a": 1, "b": 2}, (9,), (8,), (7,), {"b": 2, "a": 1}], 0, 4),
        ([3, (3,)], 0, 1),  # a scalar and its 1-tuple
    ],
)
def test_duplicate_jobs_name_both_positions(pool, first, second):
    """Two jobs with the same id are refused, naming both positions (each run would be lost)."""
    with pytest.raises(UserError) as info:
        JobPool(pool)
    message = str(info.value)
    assert f"pool[{first}]" in message and f"pool[{second}]" in message
    assert job_id(pool[first]).hex() in message


def test_pool_keeps_user_order_and_ids():
    """JobPool keeps jobs in the user's order and one id per job; sorted_ids is order-free."""
    jobs = [(3,), {"x": 1}, "s", (1.5, [2])]
    pool = JobPool(jobs)
    assert pool.jobs == jobs
    assert list(pool.ids) == [job_id(j) for j in jobs]
    assert JobPool(list(reversed(jobs))).sorted_ids() == pool.sorted_ids() == b"".join(sorted(pool.ids))


# --- the fast paths of large pools (issue 14) ------------------------------------------------

from hypothesis import given, settings
from hypothesis import strategies as st

from jobsplit.idhash import ID_DOMAIN, ONE_BLOCK, short_sha256, texts_of
from jobsplit.pool import _encode, _escapes_nothing, _id_texts, _uniform_text, identity_texts
from jobsplit.text import clean_text

_SCALAR = {
    int: st.integers(min_value=-(2**70), max_value=2**70),
    float: st.floats(allow_nan=False, allow_infinity=False),
    str: st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([int, float, str]), min_size=1, max_size=4).flatmap(
    lambda kinds: st.lists(st.tuples(*(_SCALAR[kind] for kind in kinds)), min_size=1, max_size=20)
))  # fmt: skip
def test_the_formatted_text_is_the_canonical_json_exactly(pool):
    """Uniform pools take a %-format shortcut; its text must be the encoder's, byte for byte
    (ids, and so digests and plans, hang on it), whatever the chunk boundaries."""
    assert _uniform_text(pool, "") is not None
    texts = [text.decode() for chunk in _id_texts(pool, b"", chunk=3) for text in texts_of(chunk)]
    assert texts == [_encode(job) for job in pool]


_TRICKY_TEXT = st.text(st.sampled_from(["a", "é", "\U000100e9", "\\", '"', "\n", "\udce9", "\udcff", "\ud800"]), max_size=8)
"""Lone surrogates among what the encoder escapes and what it keeps: a path from ``os.fsdecode``
of a name that is not UTF-8 holds one (``st.text()`` itself never makes them)."""

_ANY_TEXT = {**_SCALAR, str: st.one_of(st.text(), _TRICKY_TEXT)}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([int, float, str]), min_size=1, max_size=4).flatmap(
    lambda kinds: st.lists(st.tuples(*(_ANY_TEXT[kind] for kind in kinds)), min_size=1, max_size=20)
))  # fmt: skip
def test_a_batch_s_job_args_made_at_once_are_each_job_s_identity_text(pool):
    """A worker makes the Job Args texts of a batch of uniform tuples in one %-format: the very
    texts identity_text gives each job (results.csv rows, and rebuilding a journal, hang on it)."""
    assert identity_texts(pool) == [identity_text(job, position) for position, job in enumerate(pool)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.integers(0, 3), _TRICKY_TEXT), st.lists(_TRICKY_TEXT, max_size=2).map(tuple)), min_size=1, max_size=20, unique=True))
def test_a_lone_surrogate_is_hashed_as_the_json_escape_its_job_args_cell_shows(pool):
    """``os.listdir`` gives lone surrogates for names that are not UTF-8, and such a pool runs:
    a job's id is the SHA-256 of its identity text with each lone surrogate written as its JSON
    escape, the text its Job Args cell shows; the same by the fast path and by the encoder. JSON
    reads that text back as the very job when its lone surrogates are low ones, as ``os.fsdecode``
    makes them (a high one before a low one reads back as the character of the pair). No two jobs
    share an id (JobPool refuses repeats): not a pair of lone surrogates and the character it
    escapes, nor a name that spells the escape with a real backslash."""
    texts = [identity_text(job, 0) for job in pool]
    shown = list(map(clean_text, texts))
    for job, text, cell in zip(pool, texts, shown):
        assert tuple(json.loads(cell)) == job or re.search("[\ud800-\udbff]", text)
    expected = [hashlib.sha256(ID_DOMAIN + text.encode()).digest()[:ID_BYTES] for text in shown]
    assert list(JobPool(pool).ids) == [job_id(job) for job in pool] == expected
    assert job_id(("caf\udce9",)) != job_id(("caf\\udce9",))


def test_the_escape_check_agrees_with_the_encoder_on_every_character():
    """The shortcut writes a place's strings between bare quotes only if the check finds nothing
    the encoder would escape: it must agree with the encoder on every code point (the UTF-8 bytes
    of a character beyond ASCII never look like a quote, a backslash or a control character)."""
    escaped = []
    for c in range(0x110000):  # lone surrogates included
        kept = json.encoder.encode_basestring(chr(c)) == f'"{chr(c)}"'
        assert _escapes_nothing(f"a{chr(c)}b") == kept, hex(c)
        escaped += [] if kept else [chr(c)]
    assert escaped == [*map(chr, range(0x20)), '"', "\\"]
    assert _escapes_nothing("") and not _escapes_nothing("x" * 10_000 + "\n")


def test_batches_of_other_shapes_are_left_to_identity_text():
    assert identity_texts([]) is None and identity_texts([1, 2]) is None and identity_texts([{"a": 1}]) is None
    assert identity_texts([(1, 2.0), (1, "a")]) is None and identity_texts([(True,)]) is None
    huge = 10**5000  # more digits than str() converts by default: identity_text writes them all
    assert identity_texts([(huge,)]) is None and len(identity_text((huge,), 0)) == len("[]") + 5001


_ANY_SCALAR = st.one_of(st.none(), st.booleans(), *_SCALAR.values(), st.just(float("nan")), st.just(float("-inf")))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.integers(), st.floats(allow_nan=False, allow_infinity=False)),  # runs of uniform chunks...
    st.lists(_ANY_SCALAR, max_size=3).map(tuple),  # ...beside chunks of any scalars, any length
), min_size=1, max_size=30))  # fmt: skip
def test_chunks_of_any_shape_get_the_encoders_text(pool):
    """Each chunk is checked on its own: a chunk that mixes kinds, lengths, None, bools or NaN
    falls back to the encoder, and the text is still the encoder's, byte for byte."""
    texts = [text.decode() for chunk in _id_texts(pool, b"", chunk=3) for text in texts_of(chunk)]
    assert texts == [_encode(job) for job in pool]
    unique = list({job_id(job): job for job in pool}.values())
    assert list(JobPool(unique).ids) == [job_id(job) for job in unique]


def test_ids_are_sha256_whichever_implementation_hashes_a_chunk():
    """Chunks of one-block texts are hashed by CPython's own SHA-256, longer ones by OpenSSL's:
    the ids are the general path's either way, on both sides of the boundary."""
    room = ONE_BLOCK - len(ID_DOMAIN) - len('["",0]')
    short = [("x" * room, i) for i in range(10)]  # exactly one block each
    long = [("x" * (room + 1), i) for i in range(10)]  # one byte more
    assert {len(ID_DOMAIN + _encode(job).encode()) for job in short} == {ONE_BLOCK}
    for pool in (short, long, short + long):
        assert list(JobPool(pool).ids) == [hashlib.sha256(ID_DOMAIN + _encode(job).encode()).digest()[:ID_BYTES] for job in pool]
    assert short_sha256(b"abc").digest() == hashlib.sha256(b"abc").digest()


def test_a_chunk_with_a_non_scalar_ends_the_fast_path():
    pool = [(1, 2.0)] * 3 + [(1, [2])]
    assert [chunk is None for chunk in _id_texts(pool, b"", chunk=3)] == [False, True]
    assert [chunk is None for chunk in _id_texts([{"a": 1}, (1,)], b"", chunk=1)] == [True]


def test_other_pools_are_left_to_the_encoder():
    assert _uniform_text([(1.0,), (float("nan"),)], "") is None  # NaN is spelled NaN in JSON, not nan
    assert _uniform_text([(1, 2), (1, "a")], "") is None  # mixed kinds in one place
    assert _uniform_text([(True,)], "") is None and _uniform_text([(None,)], "") is None
    assert _uniform_text([(1,), (1, 2)], "") is None and _uniform_text([()], "") is None
    assert _uniform_text([(1, "a"), ("a", 1)], "") is None  # each place on its own, not the mix of all


def test_an_integer_of_any_length_is_hashed_whole():
    """Python refuses str() of an int of more than 4,300 digits by default: such an argument made
    planning fail with a traceback. Its id hashes every digit, on the fast path and the general
    one alike, its Job Args text has them all, and the limit is left as it was."""
    huge = 10**5000 + 3
    limit = sys.get_int_max_str_digits()
    text = f"[1{'0' * 4999}3,2]"
    assert identity_text((huge, 2), 0) == text
    expected = hashlib.sha256(ID_DOMAIN + text.encode()).digest()[:ID_BYTES]
    assert job_id((huge, 2)) == expected
    assert JobPool([(huge, 2), (1, 2)]).ids[0] == expected  # uniform: the %-format path
    assert JobPool([(huge, 2), (1, "x", None)]).ids[0] == expected  # mixed: the encoder's path
    assert JobPool([(huge, 2)], key=lambda job: job).ids[0] == expected  # keyed
    assert sys.get_int_max_str_digits() == limit


def test_packed_ids_behave_as_a_sequence_of_ids():
    jobs = [(i, f"x{i}") for i in range(300)]
    pool = JobPool(jobs)
    ids = [job_id(j) for j in jobs]
    assert len(pool.ids) == 300 and list(pool.ids) == ids and pool.ids[-1] == ids[-1] and pool.ids[5:8] == ids[5:8]
    assert pool.ids_hex(range(300)) == [i.hex() for i in ids]
    assert pool.ids.position(ids[123]) == 123 and pool.ids.position(b"\0" * 16) == -1
    assert pool.sorted_ids() == b"".join(sorted(ids))


def test_estimated_costs_are_any_real_numbers_a_float_holds():
    """A cost function returning np.int64(8) was refused as no "finite number >= 0", and one
    returning 10**400 ended in an OverflowError traceback, under any strategy (costs are part
    of the digest)."""
    from jobsplit.project import _costs

    numpy = pytest.importorskip("numpy")
    pool = JobPool([(1,), (2,)])
    assert _costs(pool, lambda x: numpy.int64(x) ** 3) == [1.0, 8.0] == _costs(pool, lambda x: x**3)
    for bad, shown in ((lambda x: 10 ** (400 * x), "an int too large for a float"), (lambda x: Fraction(10 ** (400 * x)), "a Fraction too large for a float"), (lambda x: -x, "-1"), (lambda x: "1", "'1'"), (lambda x: True, "True")):
        with pytest.raises(UserError, match=rf"cost\(pool\[0\]\) returned {re.escape(shown)}; estimated costs must be finite numbers >= 0"):
            _costs(pool, bad)
