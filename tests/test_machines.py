"""machines.json: name -> [speed, cores]; every malformed input names the file, machine and field."""

from __future__ import annotations

import json

import pytest

from conftest import write_config_dir
from jobsplit import UserError
from jobsplit.machines import Machine, load_machines, parse_machines, usable_cores
from jobsplit.pool import JobPool
from jobsplit.project import load_project


def load(tmp_path, content):
    """Write machines.json (JSON-able object, or raw text) and load it."""
    path = tmp_path / "machines.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return load_machines(path)


def test_machines_are_parsed_and_sorted_by_name(tmp_path):
    """Key order in the file never matters: machines come sorted by name, speeds as floats."""
    machines = load(tmp_path, '{"zeta": [2, 4], "alpha": [0.5, 16], "mid": [1.25, 1]}')
    assert machines == (Machine("alpha", 0.5, 16), Machine("mid", 1.25, 1), Machine("zeta", 2.0, 4))
    assert all(type(m.speed) is float and type(m.cores) is int for m in machines)
    assert machines[0].capacity == 8.0 and machines[2].capacity == 8.0


def test_bom_and_whitespace_are_fine(tmp_path):
    machines = load(tmp_path, '\ufeff\n  {\r\n\t"b" : [ 1.5 , 4 ] ,"a":[1,8]}\n\n')
    assert [m.name for m in machines] == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('{"alpha": [1.0, 8],}', ["line 1", "invalid JSON", "after a comma that ends the list (JSON allows none after the last entry)"]),
        ('{"alpha": [1.0, 8,]}', ["line 1", "after a comma that ends the list"]),
        ("alpha: [1, 8]", ["invalid JSON"]),
        ("", ["invalid JSON"]),
        ('[["alpha", 1.0, 8]]', ["JSON object", "list"]),
        ('"alpha"', ["JSON object", "string"]),
        ("{}", ["no machines"]),
        ({"alpha": 8}, ['"alpha"', "[speed, cores]"]),
        ({"alpha": [1.0]}, ['"alpha"', "[speed, cores]"]),
        ({"alpha": [1.0, 8, 2]}, ['"alpha"', "[speed, cores]"]),
        ({"alpha": {"speed": 1, "cores": 8}}, ['"alpha"', "[speed, cores]"]),
        ({"ok": [1, 2], "alpha": [0, 8]}, ['"alpha" speed', "> 0"]),
        ({"alpha": [-1.5, 8]}, ['"alpha" speed', "-1.5"]),
        ({"alpha": ["1.0", 8]}, ['"alpha" speed', '"1.0"']),
        ({"alpha": [True, 8]}, ['"alpha" speed', "true"]),
        ({"alpha": [None, 8]}, ['"alpha" speed', "null"]),
        ('{"alpha": [NaN, 8]}', ['"alpha" speed', "NaN"]),
        ('{"alpha": [Infinity, 8]}', ['"alpha" speed', "a finite number", "Infinity"]),
        ('{"alpha": [1e400, 8]}', ['"alpha" speed', "a finite number", "Infinity"]),  # a number too large for a float
        ({"alpha": [1.0, 0]}, ['"alpha" cores', "from 1 to 100,000"]),
        ({"alpha": [1.0, 3200000000000]}, ['"alpha" cores', "from 1 to 100,000", "3200000000000"]),  # a typo of a few digits: plan ended in a MemoryError
        ({"alpha": [1.0, -4]}, ['"alpha" cores', "-4"]),
        ({"alpha": [1.0, 2.5]}, ['"alpha" cores', "2.5"]),
        ({"alpha": [1.0, 8.0]}, ['"alpha" cores', "8.0"]),
        ({"alpha": [1.0, "8"]}, ['"alpha" cores', '"8"']),
        ({"alpha": [1.0, True]}, ['"alpha" cores', "true"]),
        ('{"alpha": [1, 8], "beta": [1, 2], "alpha": [2, 4]}', ['"alpha"', "twice"]),
        ({"Lab": [1, 8], "beta": [1, 2], "lab": [2, 4]}, ['"Lab" and "lab"', "only in case"]),
        ({"sim": {"speed": 1, "cores": 2, "array": 3}, "SIM": [1, 8]}, ['"sim" and "SIM"', "only in case"]),  # an array's members too
        ({"n" * 101: [1, 8]}, ['"nnnnnnnnnnnnnnnnnnnn..." is 101 bytes long', "at most 100"]),  # a folder name of 250 was a traceback
        ({"é" * 51: [1, 8]}, ["is 102 bytes long"]),
        ({"a b": [1, 8]}, ['"a b"', "name"]),
        ({"a/b": [1, 8]}, ['"a/b"', "name"]),
        ({".hidden": [1, 8]}, ['".hidden"', "name"]),
        ({"": [1, 8]}, ['""', "name"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_machines(tmp_path, content, needles):
    """Each malformed machines.json is one-line UserError naming the file, the machine and the field."""
    with pytest.raises(UserError) as info:
        load(tmp_path, content)
    message = str(info.value)
    assert "machines.json" in message
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("zeros", [400, 5000])
def test_a_whole_number_speed_too_large_for_a_float_is_refused_as_1e400_is(tmp_path, zeros):
    """``1`` and 400 zeros was an OverflowError traceback (``math.isfinite`` of an int), and
    over 4,300 digits a ValueError from the JSON parser: now the sentence of every bad speed,
    with the number cut short."""
    with pytest.raises(UserError) as info:
        load(tmp_path, f'{{"alpha": [1{"0" * zeros}, 8]}}')
    assert str(info.value).endswith(f'machines.json "alpha" speed: must be a finite number > 0 (relative single-thread speed); got 1000000000... (a number of {zeros + 1:,} digits)')


@pytest.mark.parametrize(
    ("encoded", "sentence"),
    [
        ('{"café": [1, 8]}'.encode("cp1252"), "is not UTF-8 text (its byte 0xE9 is not UTF-8; saved in another encoding, such as Windows-1252?); save it as UTF-8"),
        ('{"alpha": [1, 8]}'.encode("utf-16"), "is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; save it as UTF-8"),
    ],
)
def test_a_machines_json_saved_in_another_encoding_is_refused_saying_to_save_it_as_utf8(tmp_path, encoded, sentence):
    """Windows-1252 or UTF-16 was "cannot be read ('utf-8' codec can't decode byte ...); check
    the file and its permissions", which pointed away from the encoding."""
    path = tmp_path / "machines.json"
    path.write_bytes(encoded)
    with pytest.raises(UserError) as info:
        load_machines(path)
    assert str(info.value) == f"{path} {sentence}"


def test_valid_names(tmp_path):
    """Letters, digits, '_', '-' and '.' (not first) are folder-safe names."""
    machines = load(tmp_path, {"node-01.lab": [1, 2], "gpu_box": [2, 1], "Zeta9": [1, 1]})
    assert {m.name for m in machines} == {"node-01.lab", "gpu_box", "Zeta9"}


def test_parse_machines_defaults_to_the_file_name():
    with pytest.raises(UserError, match=r'machines\.json "x" cores'):
        parse_machines({"x": [1, 0]})


def test_absent_machines_json_plans_for_this_host(tmp_path):
    """Without machines.json the plan has one machine, this host, speed 1, with a one-line notice."""
    folder = write_config_dir(tmp_path, machines=None)
    assert not (folder / "machines.json").exists()
    project = load_project(JobPool([(i,) for i in range(10)]), folder)
    (machine,) = project.machines
    assert machine.speed == 1.0
    assert machine.cores == usable_cores() >= 1
    assert machine.name  # the (sanitized) hostname
    assert len(project.notices) == 1
    (notice,) = project.notices
    assert "machines.json" in notice and machine.name in notice and "\n" not in notice
    assert list(project.plan.shares[0]) and sorted(project.plan.shares[0]) == list(range(10))


def test_present_machines_json_gives_no_notice(config_dir):
    project = load_project(JobPool([(1,)]), config_dir)
    assert project.notices == ()
    assert [m.name for m in project.machines] == ["alpha", "beta", "gamma"]
