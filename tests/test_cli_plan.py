"""`digest` and `plan` through a real entry script in fresh interpreters (issue 2, Must show 3 and 4).

Each host runs the entry in its own process, with its own hash seed, its own copy of the
config files and possibly its own pool order; all of that must give the same digest and plan.
Bad input must end in one sentence naming the file and field, exit status 2, no traceback.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG, DEFAULT_HEADER, DEFAULT_MACHINES, ENTRY_POOL_SIZE, entry_env, run_entry, write_config_dir, write_entry
from jobsplit.pool import JobPool
from runhelpers import pool_spec, read_results, run_args, run_env, write_kinds_entry

STRATEGY_NAMES = ("quota", "rendezvous", "cost")
DIGEST_RE = re.compile(r"[0-9a-f]{4}(?:-[0-9a-f]{4}){7}")


class Setup:
    """One entry script and one config folder, with memoized runs of the unchanged pair."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entry = write_entry(root / "entry.py")
        self.config = write_config_dir(root / "config")
        self._plans: dict[tuple[str, str], dict] = {}

    def plan(self, strategy: str = "quota", order: str = "") -> dict:
        """`plan --json` of the unchanged setup (pool reordered by ``order``), run once."""
        if (strategy, order) not in self._plans:
            env = entry_env(JOBSPLIT_TEST_ORDER=order)
            self._plans[strategy, order] = plan_json(self.entry, self.config, "--strategy", strategy, env=env)
        return self._plans[strategy, order]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("cli"))


def ok(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def plan_json(entry: Path, config: Path, *args: str, env=None) -> dict:
    """Run `plan --json` and parse stdout, which must be exactly one JSON document."""
    result = ok(run_entry(entry, "plan", "--json", "--config-dir", config, *args, env=env))
    return json.loads(result.stdout)


def digest(entry: Path, config: Path, *args: str, env=None) -> str:
    """Run `digest`; stdout must be the grouped digest and nothing else."""
    result = ok(run_entry(entry, "digest", "--config-dir", config, *args, env=env))
    assert DIGEST_RE.fullmatch(result.stdout.rstrip("\n")), result.stdout
    assert result.stdout.count("\n") == 1
    return result.stdout.strip()


def pool_of(entry: Path) -> list:
    """The entry script's pool, loaded in this process (its main() does not run)."""
    return runpy.run_path(str(entry))["pool"]


# --- output shape ----------------------------------------------------------------------------


def test_digest_prints_only_the_digest(setup):
    """stdout is exactly the digest in 8 groups of 4 hex digits; nothing else on either stream."""
    result = ok(run_entry(setup.entry, "digest", "--config-dir", setup.config))
    assert DIGEST_RE.fullmatch(result.stdout.rstrip("\n"))
    assert result.stdout == result.stdout.strip() + "\n"
    assert result.stderr == ""
    assert result.stdout.strip() == setup.plan("quota")["digest"]


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_plan_json_document(setup, strategy):
    """`plan --json` is one JSON object with the documented keys, and its job ids cover the pool."""
    doc = setup.plan(strategy)
    assert set(doc) == {"digest", "strategy", "total_jobs", "machines"}
    assert DIGEST_RE.fullmatch(doc["digest"])
    assert doc["strategy"] == strategy
    assert doc["total_jobs"] == ENTRY_POOL_SIZE
    assert [m["name"] for m in doc["machines"]] == sorted(DEFAULT_MACHINES)
    for machine in doc["machines"]:
        assert set(machine) == {"name", "speed", "cores", "share", "jobs", "job_ids"}
        speed, cores = DEFAULT_MACHINES[machine["name"]]
        assert machine["speed"] == speed and isinstance(machine["speed"], float)
        assert machine["cores"] == cores and isinstance(machine["cores"], int)
        assert machine["jobs"] == len(machine["job_ids"])
        assert machine["share"] == pytest.approx(machine["jobs"] / ENTRY_POOL_SIZE)
        assert all(re.fullmatch(r"[0-9a-f]{32}", job_id) for job_id in machine["job_ids"])
    listed = [job_id for m in doc["machines"] for job_id in m["job_ids"]]
    expected = JobPool(pool_of(setup.entry)).ids
    assert sorted(listed) == sorted(job_id.hex() for job_id in expected)  # each job exactly once


def test_plan_table_shows_machines_and_digest(setup):
    """The table names every machine with its cores and job count, the total, and the digest."""
    result = ok(run_entry(setup.entry, "plan", "--config-dir", setup.config))
    doc = setup.plan("quota")
    assert f"digest {doc['digest']}" in result.stdout
    assert "quota" in result.stdout
    for machine in doc["machines"]:
        row = next(line for line in result.stdout.splitlines() if f" {machine['name']} " in line)
        cells = [cell.strip() for cell in re.split(r"[│|┃]", row) if cell.strip()]
        assert cells[2] == str(machine["cores"]) and cells[4] == str(machine["jobs"])
    assert re.search(r"total\b.*\b200\b", result.stdout)


def test_config_dir_defaults_to_the_current_directory(setup):
    result = ok(run_entry(setup.entry, "digest", cwd=setup.config))
    assert result.stdout.strip() == setup.plan("quota")["digest"]


def test_else_the_config_files_beside_the_entry_script_are_found(setup, tmp_path):
    """``python ~/study/entry.py run`` from any folder finds ~/study's config files (as an
    executable finds those beside it), rather than suggesting to write templates where it stands."""
    study = tmp_path / "study"
    shutil.copytree(setup.config, study)
    entry = shutil.copy(setup.entry, study / "entry.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = ok(run_entry(Path(entry), "digest", cwd=elsewhere))
    assert result.stdout.strip() == setup.plan("quota")["digest"]


# --- identical across hosts ------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_hash_seed_does_not_matter(setup, strategy):
    """PYTHONHASHSEED=0, 1 and random: the same digest and the same `plan --json`."""
    digests, plans = set(), []
    for seed in ("0", "1", "random"):
        env = entry_env(PYTHONHASHSEED=seed)
        digests.add(digest(setup.entry, setup.config, "--strategy", strategy, env=env))
        plans.append(plan_json(setup.entry, setup.config, "--strategy", strategy, env=env))
    assert digests == {plans[0]["digest"]}
    assert plans[0] == plans[1] == plans[2]


def assignment(doc: dict) -> dict[str, set[str]]:
    return {m["name"]: set(m["job_ids"]) for m in doc["machines"]}


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_entry_reorders_its_pool(setup, monkeypatch, order):
    """JOBSPLIT_TEST_ORDER really reorders the entry's pool (else the order tests prove nothing)."""
    original = pool_of(setup.entry)
    monkeypatch.setenv("JOBSPLIT_TEST_ORDER", order)
    reordered = pool_of(setup.entry)
    assert reordered != original
    assert sorted(JobPool(reordered).ids) == sorted(JobPool(original).ids)


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
@pytest.mark.parametrize("strategy", STRATEGY_NAMES)
def test_pool_order_keeps_digest_and_assignment(setup, strategy, order):
    """Reordering the pool: the same digest, and every machine gets the same jobs."""
    original, reordered = setup.plan(strategy), setup.plan(strategy, order)
    assert reordered["digest"] == original["digest"]
    assert assignment(reordered) == assignment(original)


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
@pytest.mark.parametrize("strategy", ["quota", "cost", "rendezvous"])
def test_pool_order_keeps_plan_identical(setup, strategy, order):
    """Reordering the pool: `plan --json` is identical, run order within each share included."""
    assert setup.plan(strategy, order) == setup.plan(strategy)


def _crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


COMMENTED_CONFIG = """\
; a different comment style

# Settings shared by every host.
[jobsplit]
# which split
strategy = quota


[experiment]
    # an indented comment
samples = 1000

report_every = 100
; more comments
max_scratch = 64MiB
label = small test run

# trailing comment
"""

REORDERED_CONFIG = """\
[experiment]
label=small test run
MAX_SCRATCH :   64MiB
report_every= 100
Samples =1000
[jobsplit]
strategy   =   quota
"""

REFORMATTED_MACHINES = '{"gamma":[0.5,2],\n\n\t  "alpha" : [ 1.0 , 8 ]  ,"beta":[1.5,4]}'
REFORMATTED_HEADER = "\ufeff" + " , ".join(DEFAULT_HEADER) + ",,\r\n"

LAYOUT_VARIANTS = {
    "crlf": dict(config=_crlf(DEFAULT_CONFIG)),
    "comments-blank-lines": dict(config=COMMENTED_CONFIG),
    "reordered-keys-sections": dict(config=REORDERED_CONFIG),
    "bom": dict(config="\ufeff" + DEFAULT_CONFIG),
    "machines-reformatted": dict(machines=REFORMATTED_MACHINES),
    "machines-int-speed": dict(machines='{"alpha": [1, 8], "beta": [1.5, 4], "gamma": [0.5, 2]}'),
    "header-reformatted": dict(header=REFORMATTED_HEADER),
    "everything": dict(
        config="\ufeff" + _crlf(REORDERED_CONFIG + "\n; comment\n\n"),
        machines=_crlf(REFORMATTED_MACHINES),
        header=REFORMATTED_HEADER,
    ),
}


@pytest.mark.parametrize("variant", list(LAYOUT_VARIANTS))
def test_config_layout_does_not_matter(setup, tmp_path, variant):
    """Same content, different bytes (CRLF, comments, blank lines, order, BOM, JSON layout): same plan."""
    folder = write_config_dir(tmp_path / variant, **LAYOUT_VARIANTS[variant])
    assert plan_json(setup.entry, folder) == setup.plan("quota")


@pytest.mark.parametrize("strategy", ["rendezvous", "cost"])
def test_config_layout_does_not_matter_for_other_strategies(setup, tmp_path, strategy):
    folder = write_config_dir(tmp_path / "everything", **LAYOUT_VARIANTS["everything"])
    assert plan_json(setup.entry, folder, "--strategy", strategy) == setup.plan(strategy)


# --- different when anything that shapes the plan changes -------------------------------------


def _machines(**changes) -> dict:
    return {**DEFAULT_MACHINES, **changes}


CHANGES = {
    "config-value": (dict(config=DEFAULT_CONFIG.replace("samples = 1000", "samples = 1001")), "", ()),
    "config-new-key": (dict(config=DEFAULT_CONFIG + "extra = yes\n"), "", ()),
    "config-strategy": (dict(config=DEFAULT_CONFIG.replace("strategy = quota", "strategy = rendezvous")), "", ()),
    "machine-speed": (dict(machines=_machines(beta=[1.6, 4])), "", ()),
    "machine-cores": (dict(machines=_machines(beta=[1.5, 5])), "", ()),
    "machine-added": (dict(machines=_machines(delta=[1.0, 1])), "", ()),
    "machine-renamed": (dict(machines={"alpha": [1.0, 8], "beta2": [1.5, 4], "gamma": [0.5, 2]}), "", ()),
    "header-renamed": (dict(header=(*DEFAULT_HEADER[:-1], "Err")), "", ()),
    "header-reordered": (dict(header=(*DEFAULT_HEADER[:3], *reversed(DEFAULT_HEADER[3:]))), "", ()),
    "job-added": ({}, "pool.append(('one more job',))", ()),
    "job-argument-changed": ({}, "pool[10] = (10, 10 / 7, 'name-ten')", ()),
    "job-removed": ({}, "del pool[150]", ()),
    "strategy-flag": ({}, "", ("--strategy", "rendezvous")),
    "seed-flag": ({}, "", ("--seed", "my seed")),
}


@pytest.fixture(scope="module")
def base_digest(setup) -> str:
    return setup.plan("quota")["digest"]


@pytest.mark.parametrize("change", list(CHANGES))
def test_digest_changes_with_the_input(setup, tmp_path, base_digest, change):
    """A changed config value, machine, header, job, strategy or --seed gives another digest."""
    files, extra, args = CHANGES[change]
    folder = write_config_dir(tmp_path / "config", **files)
    entry = write_entry(tmp_path / "entry.py", extra=extra) if extra else setup.entry
    assert digest(entry, folder, *args) != base_digest


PART_OF_CHANGE = {
    "config-value": {"config"},
    "config-new-key": {"config"},
    "config-strategy": {"config", "strategy"},
    "machine-speed": {"machines"},
    "machine-cores": {"machines"},
    "machine-added": {"machines"},
    "machine-renamed": {"machines"},
    "header-renamed": {"header"},
    "header-reordered": {"header"},
    "job-added": {"pool"},
    "job-argument-changed": {"pool"},
    "job-removed": {"pool"},
    "strategy-flag": {"strategy"},
    "seed-flag": {"seed"},
}


def digest_parts(entry: Path, config: Path, *args: str, env=None) -> tuple[str, dict[str, str]]:
    """Run `digest --parts`: the digest, then one line per part (name, fingerprint, what it is)."""
    lines = ok(run_entry(entry, "digest", "--parts", "--config-dir", config, *args, env=env)).stdout.splitlines()
    assert DIGEST_RE.fullmatch(lines[0]), lines
    parts = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert list(parts) == ["pool", "config", "header", "machines", "seed", "strategy"], lines
    return lines[0], parts


@pytest.fixture(scope="module")
def base_parts(setup) -> dict[str, str]:
    digest, parts = digest_parts(setup.entry, setup.config)
    assert digest == setup.plan("quota")["digest"]  # --parts does not change the digest it prints
    return parts


@pytest.mark.parametrize("change", list(CHANGES))
def test_digest_parts_name_the_part_that_differs(setup, tmp_path, base_parts, change):
    """Two hosts whose digests differ compare `digest --parts`: the fingerprints that differ are
    those of the part that changed, and only those."""
    files, extra, args = CHANGES[change]
    folder = write_config_dir(tmp_path / "config", **files)
    entry = write_entry(tmp_path / "entry.py", extra=extra) if extra else setup.entry
    _, parts = digest_parts(entry, folder, *args)
    assert {name for name in parts if parts[name] != base_parts[name]} == PART_OF_CHANGE[change]


def test_digest_parts_do_not_depend_on_pool_order_or_hash_seed(setup, base_parts):
    _, parts = digest_parts(setup.entry, setup.config, env=entry_env(JOBSPLIT_TEST_ORDER="shuffled", PYTHONHASHSEED="123"))
    assert parts == base_parts


@pytest.mark.parametrize("args", [["digest"], ["digest", "--parts"], ["digest", "--jobs"], ["plan"], ["plan", "--json"]], ids=" ".join)
def test_a_reader_that_goes_away_ends_the_command_with_status_141(setup, args):
    """`ENTRY plan | head -0`: the reader of stdout is gone before anything is written. The
    command ends as a shell reports SIGPIPE (141, as the README says), saying nothing."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run(
            [sys.executable, str(setup.entry), *args, "--config-dir", str(setup.config)],
            stdout=writer, stderr=subprocess.PIPE, text=True, env=entry_env(), timeout=60,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert result.returncode == 141 and result.stderr == "", result


@pytest.mark.parametrize("closed", ["stdout", "stderr", "stdin"])
def test_a_command_started_with_a_standard_stream_closed_works(setup, tmp_path, closed):
    """``ENTRY digest >&-``: Python leaves a closed stream None, and the first print failed with
    a traceback (``'NoneType' object has no attribute 'isatty'``), after a whole run for ``run``
    (exit 1); and the next file opened took the closed descriptor's number, for whatever writes
    there to write into it. /dev/null takes it first: the commands work as with no reader."""
    fd = {"stdin": 0, "stdout": 1, "stderr": 2}[closed]
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("ok", 6))
    for args in (["digest", "--parts"], ["plan"], ["run", *[str(a) for a in run_args(config_dir, tmp_path / "out")][1:]]):
        command = [sys.executable, str(entry), *args, *([] if args[0] == "run" else ["--config-dir", str(config_dir)])]
        result = subprocess.run(["sh", "-c", f'exec "$@" {fd}>&-', "sh", *command], capture_output=True, text=True, env=run_env(tmp_path), timeout=90, check=False)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
    _, rows = read_results(tmp_path / "out" / "solo" / "results.csv")
    assert len(rows) == 6
    assert sqlite3.connect(tmp_path / "out" / "solo" / "journal.sqlite").execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_run_whose_console_reader_goes_away_goes_on(tmp_path):
    """``run 2>&1 | head -1`` (or a ``tee`` that died): rich's answer to the broken pipe, exit
    status 1 at the next message, stopped the run with every job pending, and the log said only
    "stopped". The run goes on without its messages (its log has them) and ends as it would."""
    entry, config_dir = write_kinds_entry(tmp_path, pool_spec("sleep", 12, 0.02))
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run([sys.executable, str(entry), *run_args(config_dir, tmp_path / "out")], stdout=writer, stderr=writer, env=run_env(tmp_path), timeout=90, check=False)
    finally:
        os.close(writer)
    assert result.returncode == 0
    _, rows = read_results(tmp_path / "out" / "solo" / "results.csv")
    assert len(rows) == 12


def test_digest_jobs_lists_the_pool_so_that_a_diff_shows_the_job_that_differs(setup, tmp_path):
    """`digest --jobs`: one line per job (Job Args, a tab, Job ID), sorted, whatever the pool's
    order; a job changed on one host is the one line that differs."""
    listed = ok(run_entry(setup.entry, "digest", "--jobs", "--config-dir", setup.config)).stdout.splitlines()
    pool = JobPool(pool_of(setup.entry))
    assert sorted(listed) == listed and len(listed) == len(pool)
    assert set(listed) == {f"{pool.identity_text(p)}\t{job_id}" for p, job_id in enumerate(pool.ids_hex(range(len(pool))))}
    shuffled = run_entry(setup.entry, "digest", "--jobs", "--config-dir", setup.config, env=entry_env(JOBSPLIT_TEST_ORDER="shuffled"))
    assert ok(shuffled).stdout.splitlines() == listed
    changed = write_entry(tmp_path / "entry.py", extra=CHANGES["job-argument-changed"][1])
    other = ok(run_entry(changed, "digest", "--jobs", "--config-dir", setup.config)).stdout.splitlines()
    assert [line.split("\t")[0] for line in set(listed) - set(other)] == ['[10,1.4285714285714286,"name-10"]']
    assert [line.split("\t")[0] for line in set(other) - set(listed)] == ['[10,1.4285714285714286,"name-ten"]']
    named = write_entry(tmp_path / "named" / "entry.py", extra="pool[10] = (10, 10 / 7, 'caf\\udce9.dat')")  # os.listdir's name for b"caf\\xe9.dat"
    other = ok(run_entry(named, "digest", "--jobs", "--config-dir", setup.config)).stdout.splitlines()
    assert [line.split("\t")[0] for line in set(other) - set(listed)] == ['[10,1.4285714285714286,"caf\\udce9.dat"]']  # as its Job Args cell shows it


def test_digest_jobs_says_when_text_is_decomposed_as_macos_writes_file_names(setup, tmp_path):
    """"café" as macOS writes a file name ("e" + U+0301) and as Linux does (one character) are two
    jobs whose lines in two hosts' lists look the same: the diff showed two equal-looking lines.
    The host whose pool holds decomposed text now says so, on stderr (the list is unchanged)."""
    decomposed = write_entry(tmp_path / "nfd" / "entry.py", extra="pool[10] = (10, 10 / 7, 'cafe\u0301.dat')")
    composed = write_entry(tmp_path / "nfc" / "entry.py", extra="pool[10] = (10, 10 / 7, 'caf\u00e9.dat')")
    mac, linux = (ok(run_entry(e, "digest", "--jobs", "--config-dir", setup.config)) for e in (decomposed, composed))
    (note,) = [line for line in mac.stderr.splitlines() if "decomposed" in line]
    assert 'such as [10,1.4285714285714286,"cafe\\u0301.dat"]' in note and 'unicodedata.normalize("NFC", name)' in note, note
    assert "decomposed" not in linux.stderr, linux.stderr
    assert len(mac.stdout.splitlines()) == ENTRY_POOL_SIZE


def test_digest_jobs_under_the_cost_strategy_shows_a_host_whose_cost_hints_differ(setup, tmp_path):
    """Under the cost strategy the cost hints are part of the pool's fingerprint: two hosts whose
    cost functions differed showed only `pool` differing in `digest --parts`, which sent them to
    `digest --jobs`, whose lists were equal (ids only). Each line now ends in the job's cost hint
    there, and only there."""
    doubled = write_entry(tmp_path / "entry.py", extra="_cost = cost\ncost = lambda *a, **k: _cost(*a, **k) * 2")
    mine, theirs = (ok(run_entry(e, "digest", "--jobs", "--strategy", "cost", "--config-dir", setup.config)).stdout.splitlines() for e in (setup.entry, doubled))
    assert len(mine) == len(theirs) == ENTRY_POOL_SIZE and set(mine).isdisjoint(theirs)
    assert [line.rsplit("\t", 1)[0] for line in mine] == [line.rsplit("\t", 1)[0] for line in theirs]
    assert [2 * float(line.rsplit("\t", 1)[1]) for line in mine] == [float(line.rsplit("\t", 1)[1]) for line in theirs]
    quota = ok(run_entry(setup.entry, "digest", "--jobs", "--config-dir", setup.config)).stdout.splitlines()
    assert [line.count("\t") for line in quota] == [1] * ENTRY_POOL_SIZE  # outside the digest: not listed


def test_digest_jobs_writes_the_same_utf8_bytes_in_a_latin1_locale(setup, tmp_path):
    """Written in the locale's encoding (here a Latin-1 stdout, as in an ISO-8859-1 locale), the
    list ended in a UnicodeEncodeError at a job "α", and gave the pool's "ü" as the byte 0xFC: a
    diff with a UTF-8 host's list flagged equal jobs. Surrogates stay backslash escapes."""
    entry = write_entry(tmp_path / "entry.py", extra="pool[:2] = [('α',), ('caf\\udce9.dat',)]")
    command = [sys.executable, str(entry), "digest", "--jobs", "--config-dir", str(setup.config)]
    utf8, latin1 = (subprocess.run(command, capture_output=True, env=entry_env(PYTHONIOENCODING=encoding), timeout=60, check=False) for encoding in ("utf-8", "iso-8859-1"))
    assert utf8.returncode == latin1.returncode == 0, latin1.stderr
    assert latin1.stdout == utf8.stdout
    lines = latin1.stdout.decode("utf-8").splitlines()
    assert len(lines) == ENTRY_POOL_SIZE and any("\u00fc" in line for line in lines)
    assert {'["caf\\udce9.dat"]', '["α"]'} <= {line.split("\t")[0] for line in lines}


def test_plan_shows_a_machine_name_its_stdout_cannot_encode_with_a_question_mark(setup, tmp_path):
    """A machine named "βeta" ended `plan` in a UnicodeEncodeError from rich where stdout is
    Latin-1 (an ISO-8859-1 locale): the table now shows "?eta"."""
    folder = write_config_dir(tmp_path / "config", machines={"alpha": [1.0, 2], "βeta": [1.5, 4]})
    result = run_entry(setup.entry, "plan", "--config-dir", folder, env=entry_env(PYTHONIOENCODING="iso-8859-1"))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert re.search(r"^\W*\?eta\W+1\.5\W+4\W", result.stdout, re.MULTILINE), result.stdout


def test_cost_hints_are_part_of_the_cost_digest(setup, tmp_path):
    """With the cost strategy, different cost estimates give another digest."""
    entry = write_entry(tmp_path / "entry.py", extra="_cost = cost\ncost = lambda *a, **k: _cost(*a, **k) * 2")
    assert digest(entry, setup.config, "--strategy", "cost") != setup.plan("cost")["digest"]


# --- bad input: one sentence, exit status 2, no traceback --------------------------------------


def _dir_config(folder: Path) -> None:
    (folder / "config.ini").unlink()
    (folder / "config.ini").mkdir()


def _no_config(folder: Path) -> None:
    (folder / "config.ini").unlink()


# name: (config files, entry extra code, arguments, prepare(folder), words the message must contain)
BAD_INPUTS = {
    "machines-invalid-json": (dict(machines='{"alpha": [1.0, 8],}'), "", (), None, ["machines.json", "line 1", "JSON"]),
    "machines-not-object": (dict(machines=[["alpha", 1.0, 8]]), "", (), None, ["machines.json", "object", "list"]),
    "machines-speed-zero": (dict(machines=_machines(alpha=[0, 8])), "", (), None, ["machines.json", '"alpha" speed']),
    "machines-speed-negative": (dict(machines=_machines(beta=[-1.5, 4])), "", (), None, ["machines.json", '"beta" speed', "-1.5"]),
    "machines-speed-string": (dict(machines=_machines(alpha=["fast", 8])), "", (), None, ["machines.json", '"alpha" speed', "fast"]),
    "machines-cores-zero": (dict(machines=_machines(gamma=[0.5, 0])), "", (), None, ["machines.json", '"gamma" cores']),
    "machines-cores-fraction": (dict(machines=_machines(alpha=[1.0, 2.5])), "", (), None, ["machines.json", '"alpha" cores', "2.5"]),
    "machines-cores-string": (dict(machines=_machines(alpha=[1.0, "8"])), "", (), None, ["machines.json", '"alpha" cores']),
    "unknown-strategy-flag": ({}, "", ("--strategy", "fastest"), None, ["--strategy", "fastest", "quota"]),
    "unknown-strategy-config": (dict(config=DEFAULT_CONFIG.replace("= quota", "= fastest")), "", (), None, ["config.ini", "strategy", "fastest"]),
    "duplicate-jobs": ({}, "pool.append(pool[3])", (), None, ["pool[3]", "pool[200]"]),
    "non-json-argument": ({}, "pool.append((1, object()))", (), None, ["pool[200][1]", "object"]),
    "config-is-a-directory": ({}, "", (), _dir_config, ["config.ini", "cannot be read"]),
    "config-not-utf8": (dict(config=b"[experiment]\nlabel = caf\xe9\n"), "", (), None, ["config.ini", "is not UTF-8 text", "save it as UTF-8"]),
    "config-no-section": (dict(config="samples = 1\n[experiment]\n"), "", (), None, ["config.ini", "line 1", "samples"]),
    "config-not-key-value": (dict(config=DEFAULT_CONFIG + "just words\n"), "", (), None, ["config.ini", "line 10", "just words"]),
    "config-unknown-jobsplit-key": (dict(config=DEFAULT_CONFIG.replace("strategy", "stratgy")), "", (), None, ["config.ini", "stratgy"]),
    "config-missing": ({}, "", (), _no_config, ["config.ini", "init"]),
    "header-missing-timing": (dict(header=("Value", "Error")), "", (), None, ["header.csv", "Run Start Time"]),
    "cost-strategy-without-cost": ({}, "cost = None", ("--strategy", "cost"), None, ["cost"]),
    # Every job finished at once on any core, so the first machine got them all and the others none.
    "cost-all-zero": ({}, "cost = lambda *a, **k: 0", ("--strategy", "cost"), None, ["cost= gave 0 for every job", "all 200", 'machine "alpha"', "positive estimates"]),
    # [logging] max_size is the first file size jobsplit itself reads (the log issue). This case
    # was a strict xfail until that setting landed in the working tree.
    "bad-filesize": (dict(config=DEFAULT_CONFIG + "\n[logging]\nmax_size = 64XB\n"), "", (), None, ["config.ini", "max_size", "64XB"]),
}


def run_bad(tmp_path: Path, setup: Setup, files, extra, args, prepare):
    folder = write_config_dir(tmp_path / "config", **files)
    if prepare is not None:
        prepare(folder)
    entry = write_entry(tmp_path / "entry.py", extra=extra) if extra else setup.entry
    return run_entry(entry, "plan", "--config-dir", folder, *args)


def assert_one_error_sentence(result, needles):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize(("files", "extra", "args", "prepare", "needles"), [BAD_INPUTS[k] for k in BAD_INPUTS], ids=list(BAD_INPUTS))
def test_bad_input_is_one_sentence_and_exit_status_2(setup, tmp_path, files, extra, args, prepare, needles):
    """Each bad input: exit status 2, no traceback, one `error:` line naming the file and field."""
    assert_one_error_sentence(run_bad(tmp_path, setup, files, extra, args, prepare), needles)


def test_syntax_error_quotes_the_line_cleanly(setup, tmp_path):
    """The offending line is quoted once, without a trailing escaped newline."""
    result = run_bad(tmp_path, setup, dict(config=DEFAULT_CONFIG + "just words\n"), "", (), None)
    assert_one_error_sentence(result, ["line 10", "'just words'"])
    assert "\\n" not in result.stderr


def test_plan_json_is_streamed_as_the_very_text_of_one_json_dumps(entry_file, config_dir, tmp_path):
    """`plan --json` is written as it is produced (issue 14), yet byte for byte what one
    json.dumps of the whole document gives: scripts that compare it see no change."""
    import importlib.util

    from jobsplit.cli import _write_plan_json
    from jobsplit.digest import format_digest
    from jobsplit.pool import JobPool
    from jobsplit.project import load_project

    spec = importlib.util.spec_from_file_location("plan_entry", entry_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    project = load_project(JobPool(module.pool), config_dir)
    plan, total = project.plan, len(project.pool)
    doc = {
        "digest": format_digest(project.digest), "strategy": plan.strategy, "total_jobs": total,
        "machines": [
            {"name": m.name, "speed": m.speed, "cores": m.cores, "share": len(s) / total, "jobs": len(s), "job_ids": project.pool.ids_hex(s)}
            for m, s in zip(plan.machines, plan.shares)
        ],
    }  # fmt: skip
    pieces: list[str] = []
    _write_plan_json(project, pieces.append, chunk=7)  # a small chunk: ids cross chunk boundaries
    assert "".join(pieces) == json.dumps(doc) + "\n"


def test_a_seed_that_is_not_utf_8_is_one_sentence(setup):
    """``--seed café`` typed in a Latin-1 terminal: a UnicodeEncodeError traceback."""
    result = run_entry(setup.entry, "digest", "--config-dir", setup.config, "--seed", b"caf\xe9".decode("utf-8", "surrogateescape"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--seed 'caf\\\\udce9' is not UTF-8 text" in result.stderr, result.stderr
    assert ok(run_entry(setup.entry, "digest", "--config-dir", setup.config, "--seed", "café")).stdout  # UTF-8 is fine
