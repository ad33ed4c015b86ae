"""Per-job random streams (issue 3, Must show 3).

``random_obj`` is ``random.Random(job_seed(seed, job id))``, created lazily: the same job draws
the same numbers on any machine, worker and worker count; different jobs draw differently.
NumPy's module-level generator (``numpy.random.rand()``) is seeded before each job with the
same promise; ``random``'s (``random.random()``) in each worker, from the system.
"""

from __future__ import annotations

import copy
import pickle
import random
import re
from pathlib import Path

import pytest

from conftest import run_entry, write_config_dir
from jobsplit.digest import normalize_digest
from jobsplit.jobrandom import job_random, job_seed, seed_numpy_random
from jobsplit.messages import Batch
from jobsplit.worker import RANDOMS_AHEAD, _prepare
from runhelpers import pool_spec, read_results, run_args, run_env, spec_id, write_kinds_entry

SEED = bytes.fromhex("5a39a0a9ed3ec5d1c4ad249a4460278d")
IDS = ["d77c8b8bc4547445195928166de4bd77", "749a43569f456d6bf564857aa9ccfff9", "00" * 16, "ff" * 16]
START_METHODS = ["fork", "spawn"]


def _calls(r: random.Random) -> list:
    """A spread of methods, each of which must behave exactly as on the eager Random."""
    items = list(range(20))
    r.shuffle(items)
    return [
        r.random(),
        r.randint(1, 10**9),
        r.gauss(0.0, 1.0),
        r.gauss(0.0, 1.0),  # gauss keeps a second value between calls
        items,
        r.choice("abcdefghij"),
        r.sample(range(1000), 5),
        r.uniform(-1.0, 1.0),
        r.getrandbits(70),
        r.randbytes(9),
        r.getstate(),
    ]


@pytest.mark.parametrize("job_id", IDS)
def test_job_random_is_random_random_seeded_with_job_seed(job_id):
    lazy = job_random(SEED, job_id)
    assert isinstance(lazy, random.Random)
    assert _calls(lazy) == _calls(random.Random(job_seed(SEED, job_id)))


@pytest.mark.parametrize(
    "first_use",
    [
        lambda r: r.random(),
        lambda r: r.randint(0, 5),
        lambda r: r.gauss(0, 1),
        lambda r: r.choice([1, 2, 3]),
        lambda r: r.shuffle([1, 2, 3]),
        lambda r: r.getstate(),
    ],
    ids=["random", "randint", "gauss", "choice", "shuffle", "getstate"],
)
def test_any_first_method_starts_the_same_stream(first_use):
    lazy, eager = job_random(SEED, IDS[0]), random.Random(job_seed(SEED, IDS[0]))
    assert first_use(lazy) == first_use(eager)
    assert lazy.getstate() == eager.getstate()
    assert [lazy.random() for _ in range(5)] == [eager.random() for _ in range(5)]


def test_an_untouched_job_random_pickles_and_copies_like_a_random():
    eager = random.Random(job_seed(SEED, IDS[1]))
    expected = [eager.random() for _ in range(5)]
    for make in (
        lambda: pickle.loads(pickle.dumps(job_random(SEED, IDS[1]))),
        lambda: pickle.loads(pickle.dumps(job_random(SEED, IDS[1]), protocol=2)),
        lambda: copy.deepcopy(job_random(SEED, IDS[1])),
        lambda: copy.copy(job_random(SEED, IDS[1])),
    ):
        clone = make()
        assert isinstance(clone, random.Random)
        assert [clone.random() for _ in range(5)] == expected


def test_a_used_job_random_pickles_with_its_state():
    lazy = job_random(SEED, IDS[2])
    lazy.random()
    clone = pickle.loads(pickle.dumps(lazy))
    assert [clone.random() for _ in range(3)] == [lazy.random() for _ in range(3)]


def test_reseeding_works_as_on_a_random():
    lazy = job_random(SEED, IDS[3])
    lazy.seed(12345)
    assert lazy.random() == random.Random(12345).random()


def test_streams_depend_on_seed_and_job_id():
    assert job_random(SEED, IDS[0]).random() != job_random(SEED, IDS[1]).random()
    assert job_random(SEED, IDS[0]).random() != job_random(b"other seed", IDS[0]).random()
    assert job_seed(SEED, IDS[0]) == job_seed(bytes(SEED), IDS[0].upper())  # ids are hex, either case
    assert 0 < job_seed(SEED, IDS[0]) < 2**256


def test_the_derivation_is_pinned():
    """Hosts with different jobsplit or Python versions must agree: known streams never change."""
    assert job_seed(bytes(16), "00" * 16) == 0xCA878AC021E7DA83CD46E5EEE918B677402079B67637BB378D7DCB7E99F082FB
    assert repr(job_random(bytes(16), "00" * 16).random()) == "0.20884441547184773"
    assert repr(job_random(b"seed", "ab" * 16).gauss(0, 1)) == "0.08695533577103559"


@pytest.fixture
def numpy_random():
    """NumPy's module, with this process's module-level generator put back afterwards."""
    np = pytest.importorskip("numpy")
    state = np.random.get_state()
    yield np
    np.random.set_state(state)


def test_numpy_s_generator_is_seeded_by_seed_and_job_id_alone(numpy_random):
    np = numpy_random

    def draw(seed: bytes, job_id: str) -> float:
        seed_numpy_random(seed, job_id)
        return np.random.rand()

    first = draw(SEED, IDS[0])
    np.random.rand(), np.random.normal()  # what the job drew further, or another job before
    assert draw(SEED, IDS[0]) == first == draw(bytes(SEED), IDS[0].upper())
    assert draw(SEED, IDS[1]) != first and draw(b"other seed", IDS[0]) != first
    assert job_random(SEED, IDS[0]).random() != first  # random_obj's stream is another
    # Pinned, as random_obj's: hosts with different jobsplit or Python versions must agree.
    seed_numpy_random(bytes(16), "00" * 16)
    assert repr(np.random.rand()) == "0.20701838907874304"
    seed_numpy_random(b"seed", "ab" * 16)
    assert repr(np.random.normal()) == "1.1689029817221954"


def test_numpy_s_generators_of_1000_jobs_draw_1000_distinct_numbers(numpy_random):
    np = numpy_random
    firsts = set()
    for i in range(1000):
        seed_numpy_random(SEED, f"{i:032x}")
        firsts.add(np.random.rand())
    assert len(firsts) == 1000


def test_1000_job_ids_give_1000_distinct_first_draws_in_process():
    ids = [f"{i:032x}" for i in range(1000)]
    assert len({job_random(SEED, job_id).random() for job_id in ids}) == 1000


def test_a_small_batch_brings_its_random_objects_and_a_large_one_leaves_them_to_the_job_thread():
    """Two paths to one stream: the task reader makes the random objects of a batch of longer
    jobs; the job thread those of a batch of short ones (the end-to-end tests below run both)."""

    def batch(size: int) -> Batch:
        ids = [f"{i:032x}" for i in range(size)]
        return Batch(list(range(1, size + 1)), list(range(size)), ids, [(i,) for i in range(size)], None)

    small = _prepare(batch(RANDOMS_AHEAD), SEED)
    assert [ready.random_obj.random() for ready in small] == [random.Random(job_seed(SEED, ready.job_id)).random() for ready in small]
    assert all(ready.random_obj is None for ready in _prepare(batch(RANDOMS_AHEAD + 1), SEED))


# --- end to end ------------------------------------------------------------------------------


def _digest_from(stderr: str) -> bytes:
    match = re.search(r"digest ([0-9a-f]{4}(?:-[0-9a-f]{4}){7})", stderr)
    assert match, stderr
    return bytes.fromhex(normalize_digest(match.group(1)))


def _draws(root: Path, entry: Path, config_dir: Path, out: str, machine: str, *flags: str) -> tuple[dict[str, str], dict[str, str], bytes]:
    """Run one machine's share; (Draw by job id, Machine by job id, the run's digest)."""
    result = run_entry(entry, *run_args(config_dir, root / out, "--fresh", *flags, machine=machine), env=run_env(root), timeout=90)  # the share anew in each folder
    assert result.returncode == 0, result.stderr
    _, rows = read_results(root / out / machine / "results.csv")
    return {r["Job ID"]: r["Draw"] for r in rows}, {r["Job ID"]: r["Machine"] for r in rows}, _digest_from(result.stderr)


@pytest.mark.parametrize("start_method", START_METHODS)
def test_the_same_job_draws_the_same_on_any_machine_and_worker_count(tmp_path, start_method):
    pool = pool_spec("ok", 24)
    ids = {spec_id(s) for s in pool}
    sm = ("--start-method", start_method)

    # One digest, two worker counts on the same machine.
    entry, solo = write_kinds_entry(tmp_path / "solo", pool)
    one, _, digest = _draws(tmp_path, entry, solo, "w1", "solo", "--workers", "1", *sm)
    two, _, digest_again = _draws(tmp_path, entry, solo, "w2", "solo", "--workers", "2", *sm)
    assert digest == digest_again and set(one) == ids
    assert one == two
    for job_id, draw in one.items():
        assert draw == repr(random.Random(job_seed(digest, job_id)).random())

    # With a shared --seed, two different splits over machines: jobs change machine, not stream.
    seeded = ("--seed", "shared seed", *sm)
    _, split_a = write_kinds_entry(tmp_path / "a", pool, machines={"m1": [1.0, 1], "m2": [1.0, 1]})
    _, split_b = write_kinds_entry(tmp_path / "b", pool, machines={"m1": [1.0, 3], "m2": [3.0, 1], "m3": [1.0, 1]})
    union_a, machine_a = {}, {}
    for name, workers in (("m1", "1"), ("m2", "2")):
        draws, machines, _ = _draws(tmp_path, entry, split_a, "a", name, "--workers", workers, *seeded)
        union_a.update(draws)
        machine_a.update(machines)
    union_b, machine_b = {}, {}
    for name, workers in (("m1", "2"), ("m2", "1"), ("m3", "1")):
        draws, machines, _ = _draws(tmp_path, entry, split_b, "b", name, "--workers", workers, *seeded)
        union_b.update(draws)
        machine_b.update(machines)
    assert set(union_a) == set(union_b) == ids
    moved = [job_id for job_id in ids if machine_a[job_id] != machine_b[job_id]]
    assert len(moved) >= 6, "the two splits should put many jobs on other machines"
    assert union_a == union_b
    for job_id, draw in union_a.items():
        assert draw == repr(random.Random(job_seed(b"shared seed", job_id)).random())
    assert union_a != one  # another seed, other streams


@pytest.mark.parametrize("start_method", START_METHODS)
def test_1000_jobs_draw_1000_distinct_first_numbers(tmp_path, start_method):
    pool = pool_spec("ok", 1000)
    entry, config_dir = write_kinds_entry(tmp_path, pool)
    draws, _, digest = _draws(tmp_path, entry, config_dir, "out", "solo", "--start-method", start_method)
    assert set(draws) == {spec_id(s) for s in pool}
    assert len(set(draws.values())) == 1000
    for job_id, draw in draws.items():
        assert draw == repr(random.Random(job_seed(digest, job_id)).random())


MODULE_DRAWS_ENTRY = """
import random

import numpy as np

import jobsplit

np.random.seed(1)  # "for reproducibility", at the top, as study scripts do: a spawned worker runs it too
random.seed(1)


def job(n, x, random_obj, config, progress):
    return random.random(), np.random.rand(), np.random.normal()


if __name__ == "__main__":
    pool = [(n, float(x)) for n, x in enumerate(np.random.rand(16))]
    jobsplit.main(job, pool)
"""


IN_JOB_IMPORT_ENTRY = """
import random

import jobsplit


def job(n, x, random_obj, config, progress):
    import numpy as np  # loaded where the job runs (a spawned worker then starts faster)
    return random.random(), np.random.rand(), np.random.normal()


if __name__ == "__main__":
    jobsplit.main(job, [(n, n / 16) for n in range(16)])
"""


@pytest.mark.parametrize("start_method", START_METHODS)
@pytest.mark.parametrize("entry_text", [MODULE_DRAWS_ENTRY, IN_JOB_IMPORT_ENTRY], ids=["numpy-at-the-top", "numpy-in-the-job"])
def test_jobs_that_draw_from_the_module_generators_do_not_repeat_each_other(tmp_path, start_method, entry_text):
    """A script that seeds NumPy (or draws from it to build its pool) before the run: every
    forked worker had its generator in the same state, so jobs on different workers drew the
    same numbers (16 jobs on 2 workers: 9 distinct values), and which job drew which depended on
    the worker count. A spawned worker ran the script's ``random.seed(1)`` again: the same
    for ``random.random()``. Now NumPy's draws are each job's own, the same whatever runs it,
    and ``random``'s are each worker's own. A job that imports NumPy itself loaded it after its
    worker had seeded nothing: each worker's first job drew other numbers in every run; now
    NumPy is seeded for it as it loads."""
    np = pytest.importorskip("numpy")
    entry = tmp_path / "entry.py"
    entry.write_text(entry_text)
    config_dir = write_config_dir(tmp_path / "config", header=["Run Start Time", "Job Running Time", "Job Start Time", "Py", "Np", "Normal"], machines={"solo": [1.0, 2]})
    runs = []
    for workers in ("2", "1"):
        result = run_entry(entry, *run_args(config_dir, tmp_path / workers, "--workers", workers, "--start-method", start_method, "--fresh"), env=run_env(tmp_path), timeout=90)
        assert result.returncode == 0, result.stderr
        _, rows = read_results(tmp_path / workers / "solo" / "results.csv")
        runs.append({r["Job ID"]: (r["Py"], r["Np"], r["Normal"]) for r in rows})
    two, one = runs
    assert len(two) == 16 and set(two) == set(one)
    for column in range(3):
        assert len({draws[column] for draws in two.values()}) == 16
    assert {job_id: draws[1:] for job_id, draws in two.items()} == {job_id: draws[1:] for job_id, draws in one.items()}
    digest = _digest_from(result.stderr)
    state = np.random.get_state()
    try:
        for job_id, draws in two.items():
            seed_numpy_random(digest, job_id)
            assert draws[1:] == (repr(np.random.rand()), repr(np.random.normal()))
    finally:
        np.random.set_state(state)


FORKING_ENTRY = """
import multiprocessing

import jobsplit


def draw(queue):
    import numpy as np  # loaded in the forked process itself
    queue.put(np.random.rand())


def job(n, random_obj, config, progress):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=draw, args=(queue,)) for _ in range(3)]
    for process in processes:
        process.start()
    draws = sorted(queue.get(timeout=60) for _ in processes)
    for process in processes:
        process.join()
    return len(set(draws))


if __name__ == "__main__":
    jobsplit.main(job, [1, 2])
"""


def test_processes_a_job_forks_draw_their_own_numpy_numbers(tmp_path):
    """NumPy's seeding at import (a job that imports it itself) was inherited by the processes a
    job forks before anything loaded NumPy: each loaded it seeded with the job's own stream, so
    three forked processes drew one number. They load it seeded by the system, as anywhere."""
    pytest.importorskip("numpy")
    entry = tmp_path / "entry.py"
    entry.write_text(FORKING_ENTRY)
    config_dir = write_config_dir(tmp_path / "config", header=["Run Start Time", "Job Running Time", "Job Start Time", "Distinct"], machines={"solo": [1.0, 1]})
    result = run_entry(entry, *run_args(config_dir, tmp_path / "out", "--start-method", "fork"), env=run_env(tmp_path), timeout=90)
    assert result.returncode == 0, result.stderr
    _, rows = read_results(tmp_path / "out" / "solo" / "results.csv")
    assert [row["Distinct"] for row in rows] == ["3", "3"]
