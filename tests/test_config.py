"""config.ini and header.csv: file sizes, the parsed config, and header checks (issue 2, "Machines and config")."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import jobsplit
from conftest import DEFAULT_CONFIG, write_config_dir
from jobsplit import UserError, parse_filesize
from jobsplit.config import JobConfig, ReadOnlyConfigError, inline_comments, load_config, load_header, log_settings

# --- parse_filesize ------------------------------------------------------------------------


def test_si_megabytes_are_powers_of_1000():
    """The original tool parsed "128MB" as 12,000,000; it is 128 * 1000**2."""
    assert parse_filesize("128MB") == 128_000_000


def test_gigabytes_are_accepted():
    """The original tool rejected "5GB"."""
    assert parse_filesize("5GB") == 5_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64MiB", 64 * 1024**2),
        ("1.5GiB", 1610612736),
        ("2KiB", 2048),
        ("3TiB", 3 * 1024**4),
        # bare K/M/G/T are 1024-based
        ("4K", 4096),
        ("2M", 2 * 1024**2),
        ("1G", 1024**3),
        ("1T", 1024**4),
        # SI suffixes are 1000-based
        ("4KB", 4000),
        ("2MB", 2_000_000),
        ("7GB", 7_000_000_000),
        ("1TB", 10**12),
        ("2.5KB", 2500),
        # bytes
        ("10B", 10),
        ("1234", 1234),
        ("0", 0),
    ],
)
def test_units(text, expected):
    """Every documented unit: IEC and bare letters are powers of 1024, SI suffixes powers of 1000."""
    assert parse_filesize(text) == expected


@pytest.mark.parametrize("text", ["64mib", "64MIB", "64Mib", "64mIb"])
def test_units_are_case_insensitive(text):
    assert parse_filesize(text) == 64 * 1024**2


@pytest.mark.parametrize("text", [" 128MB", "128MB ", "128 MB", "\t128 MB\n"])
def test_whitespace_is_ignored(text):
    assert parse_filesize(text) == 128_000_000


def test_result_is_a_whole_number_of_bytes():
    """Fractions give an int (never a float that could differ between hosts)."""
    value = parse_filesize("1.5GiB")
    assert type(value) is int
    assert type(parse_filesize("0.3KB")) is int and parse_filesize("0.3KB") == 300


@pytest.mark.parametrize("text", ["12XB", "", "-5MB", "MB", "1.2.3K", "5 G B", "1e3", "ten", "5KBB", "+5K"])
def test_bad_sizes_raise_value_error_naming_the_value(text):
    """A bad size is a ValueError whose message quotes the offending text."""
    with pytest.raises(ValueError) as info:
        parse_filesize(text)
    assert repr(text) in str(info.value)


def test_parse_filesize_is_public():
    assert jobsplit.parse_filesize is parse_filesize
    assert "parse_filesize" in jobsplit.__all__


# --- the parsed config -------------------------------------------------------------------


def test_getfilesize_on_loaded_config(tmp_path):
    """load_config gives a ConfigParser with getfilesize(section, key), like getint."""
    path = write_config_dir(tmp_path, config=DEFAULT_CONFIG + "\n[sizes]\nbig = 1.5GiB\nsi = 128MB\nbad = 12XB\n") / "config.ini"
    config = load_config(path)
    assert config.getfilesize("experiment", "max_scratch") == 64 * 1024**2
    assert config.getfilesize("sizes", "big") == 1610612736
    assert config.getfilesize("sizes", "si") == 128_000_000
    assert config.getfilesize("sizes", "missing", fallback=7) == 7
    assert config["sizes"].getfilesize("si") == 128_000_000
    with pytest.raises(ValueError, match="12XB"):
        config.getfilesize("sizes", "bad")
    assert config.getint("experiment", "samples") == 1000


def test_percent_signs_are_literal(tmp_path):
    """Interpolation is off: a '%' in a value is just a '%'."""
    path = write_config_dir(tmp_path, config="[s]\nformat = 100%% done %(x)s\n") / "config.ini"
    assert load_config(path).get("s", "format") == "100%% done %(x)s"


def test_layout_does_not_change_the_parsed_document(tmp_path):
    """Comments, blank lines, key order, key case, CRLF and a BOM are not part of the content."""
    plain = "[a]\nx = 1\ny = two words\n\n[b]\nz = 3\n"
    messy = "\ufeff; comment\r\n[b]\r\n  # another\r\nz=3\r\n\r\n[a]\r\nY =   two words\r\nX= 1\r\n"
    one = load_config(write_config_dir(tmp_path / "one", config=plain) / "config.ini").as_document()
    two = load_config(write_config_dir(tmp_path / "two", config=messy) / "config.ini").as_document()
    assert one == two == {"a": {"x": "1", "y": "two words"}, "b": {"z": "3"}, "DEFAULT": {}}


def test_values_are_part_of_the_document(tmp_path):
    one = load_config(write_config_dir(tmp_path / "one", config="[a]\nx = 1\n") / "config.ini").as_document()
    two = load_config(write_config_dir(tmp_path / "two", config="[a]\nx = 2\n") / "config.ini").as_document()
    assert one != two


@pytest.mark.parametrize("section", ["jobsplit", "logging", "balance"])
def test_a_comment_after_a_value_of_jobsplit_s_own_is_refused_naming_it(tmp_path, section):
    """The README's own example had ``timeout = 3600 ; seconds``: refused as "got '3600 ; seconds'",
    with no word on why; ``strategy = quota ; quota (default), ...`` as an unknown strategy."""
    path = write_config_dir(tmp_path, config=f"[{section}]\nsome_key = 3600      ; seconds\n") / "config.ini"
    with pytest.raises(UserError, match=rf"\[{section}\] some_key = '3600      ; seconds': config.ini takes no comment after a value \(the value is all after '='\); put the comment on a line of its own"):
        inline_comments(load_config(path), path)


def test_the_log_format_may_hold_a_hash_or_a_semicolon(tmp_path):
    """``format`` is text: ``#{job}`` in it is meant (it was refused as a comment)."""
    path = write_config_dir(tmp_path, config="[logging]\nformat = {time} {worker} #{job} ; {message}\n") / "config.ini"
    config = load_config(path)
    assert inline_comments(config, path) == []
    assert log_settings(config, path).format == "{time} {worker} #{job} ; {message}"


def test_a_value_that_looks_commented_in_the_job_s_sections_is_noted(tmp_path):
    """``method = fast # or slow`` gives the job "fast # or slow", never equal to "fast": silently
    the other branch. A notice names each such value (it may be meant: a value can hold '#')."""
    path = write_config_dir(tmp_path, config="[DEFAULT]\nseed = 7 # fixed\n[study]\nmethod = fast # or slow\nlabel = A#1;B\nnote = ; nothing\n[other]\nx = 1\n") / "config.ini"
    config = load_config(path)
    notices = inline_comments(config, path)
    assert [n.split(" holds what looks like a comment")[0] for n in notices] == [
        f"{path} [DEFAULT] seed = '7 # fixed'", f"{path} [study] method = 'fast # or slow'"
    ], notices  # "A#1;B" has no blank before its '#' or ';', and "; nothing" none before its ';'
    assert config.get("study", "method") == "fast # or slow"  # what the job gets: unchanged


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("x = 1\n[a]\n", ["line 1", "x = 1", "section"]),
        ("[a]\nx = 1\njust words\n", ["line 3", "just words"]),
        ("[a]\nx = 1\n[a]\n", ["line 3", "[a]"]),
        ("[a]\nx = 1\nX = 2\n", ["line 3", "'x'"]),
        (b"[a]\nx = \xff\n", ["is not UTF-8 text", "save it as UTF-8"]),
    ],
)
def test_config_problems_name_the_file_and_line(tmp_path, content, needles):
    """Syntax and encoding errors are one-line UserErrors naming config.ini and where."""
    path = write_config_dir(tmp_path, config=content) / "config.ini"
    with pytest.raises(UserError) as info:
        load_config(path)
    message = str(info.value)
    assert "config.ini" in message and "\n" not in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("name", ["config.ini", "header.csv"])
@pytest.mark.parametrize(
    ("encoding", "bom", "sentence"),
    [
        ("cp1252", b"", "is not UTF-8 text (its byte 0xE9 is not UTF-8; saved in another encoding, such as Windows-1252?); save it as UTF-8"),
        ("utf-16-le", b"\xff\xfe", "is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; save it as UTF-8"),
        ("utf-16-be", b"\xfe\xff", "is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; save it as UTF-8"),
    ],
)
def test_a_file_saved_in_another_encoding_is_refused_saying_to_save_it_as_utf8(tmp_path, name, encoding, bom, sentence):
    """An editor's Windows-1252 or UTF-16 was "cannot be read ('utf-8' codec can't decode byte
    0xe9 ...); check the file and its permissions", which pointed away from the encoding."""
    text = "[study]\nlabel = café\n" if name == "config.ini" else "Run Start Time,Job Running Time,Job Start Time,Café\n"
    path = tmp_path / name
    path.write_bytes(bom + text.encode(encoding))
    with pytest.raises(UserError) as info:
        (load_config if name == "config.ini" else load_header)(path)
    assert str(info.value) == f"{path} {sentence}"


def test_missing_config_points_to_init(tmp_path):
    with pytest.raises(UserError, match=r"config\.ini not found.*`init`"):
        load_config(tmp_path / "config.ini")


def test_config_that_is_a_directory(tmp_path):
    (tmp_path / "config.ini").mkdir()
    with pytest.raises(UserError, match=r"config\.ini cannot be read"):
        load_config(tmp_path / "config.ini")


# --- header.csv ----------------------------------------------------------------------------


def header_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "header.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def test_header_columns(tmp_path):
    """Cells are stripped, quoted commas kept, a BOM and trailing empty cells ignored."""
    path = header_file(tmp_path, '\ufeff"Run Start Time", Job Running Time ,Job Start Time,"Value, mean",Error,,\r\n')
    header = load_header(path)
    assert header.columns == ("Run Start Time", "Job Running Time", "Job Start Time", "Value, mean", "Error")
    assert header.result_columns == ("Value, mean", "Error")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Value,Error\n", "must start with the columns"),
        ("Run Start Time,Job Running Time,Value\n", "must start with the columns"),
        ("", "must start with the columns"),
        ("Run Start Time;Job Running Time;Job Start Time;Value\n", "separated by semicolons, as spreadsheets save CSV in some languages"),
        ("Run Start Time\tJob Running Time\tJob Start Time\n", "separated by tabs"),
        ("Run Start Time,Job Running Time,Job Start Time,A,B,A\n", '"A"'),
        ("Run Start Time,Job Running Time,Job Start Time,Job ID\n", '"Job ID"'),
        ("Run Start Time,Job Running Time,Job Start Time,Machine\n", '"Machine"'),
        ("Run Start Time,Job Running Time,Job Start Time,,A\n", "empty column"),
    ],
)
def test_bad_headers(tmp_path, text, needle):
    """Missing timing columns, duplicate or reserved names, empty names: a UserError naming header.csv."""
    with pytest.raises(UserError) as info:
        load_header(header_file(tmp_path, text))
    message = str(info.value)
    assert "header.csv" in message and needle in message


@pytest.mark.parametrize("name", ['"Volume\nEstimate"', '"Volume\r\nEstimate"', '"Volume\rEstimate"'])
def test_a_column_name_with_a_line_break_is_refused(tmp_path, name):
    """A quoted name holding a line break (a spreadsheet cell with Alt+Enter) was taken: results.csv's
    header then took two lines, and merge-results said the journal was behind the results.csv
    beside it (a line more there than rows), to copy the folder again, of a complete folder."""
    with pytest.raises(UserError, match=r"header\.csv names the column 'Volume\\[rn].*Estimate', which holds a line break; write each name on one line"):
        load_header(header_file(tmp_path, f"Run Start Time,Job Running Time,Job Start Time,{name},Error\n"))


def test_missing_header_points_to_init(tmp_path):
    with pytest.raises(UserError, match=r"header\.csv not found.*`init`"):
        load_header(tmp_path / "header.csv")


# --- the config a worker's jobs share: read-only ---------------------------------------------


def frozen_config() -> JobConfig:
    config = JobConfig()
    config.read_dict({"run": {"samples": "200", "scratch": "64MiB"}, "DEFAULT": {"seed": "7"}})
    return config.freeze()


CHANGES = {
    "set": lambda c: c.set("run", "samples", "5"),
    "section item": lambda c: c["run"].__setitem__("samples", "5"),
    "section assignment": lambda c: c.__setitem__("new", {"k": "v"}),
    "a section replaced": lambda c: c.__setitem__("run", {"k": "v"}),
    "add_section": lambda c: c.add_section("new"),
    "remove_option": lambda c: c.remove_option("run", "samples"),
    "del option": lambda c: c["run"].__delitem__("samples"),
    "remove_section": lambda c: c.remove_section("run"),
    "del section": lambda c: c.__delitem__("run"),
    "read_dict": lambda c: c.read_dict({"new": {"k": "v"}}),
    "read_string": lambda c: c.read_string("[new]\nk = v\n"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_frozen_config_refuses_every_change_and_keeps_its_values(change):
    """A worker's jobs share one config: a change would reach the jobs after it on that worker
    only, so results would depend on the schedule. Refused, saying how to get a copy."""
    config = frozen_config()
    with pytest.raises(ReadOnlyConfigError, match=r"read-only.*copy\.deepcopy\(config\)"):
        CHANGES[change](config)
    assert config.as_document() == {"run": {"samples": "200", "scratch": "64MiB", "seed": "7"}, "DEFAULT": {"seed": "7"}}
    assert (config.getint("run", "samples"), config["run"]["samples"], config.getfilesize("run", "scratch")) == (200, "200", 64 * 2**20)


def test_the_read_only_error_is_public():
    assert jobsplit.ReadOnlyConfigError is ReadOnlyConfigError and "ReadOnlyConfigError" in jobsplit.__all__


@pytest.mark.parametrize("how", [copy.deepcopy, copy.copy])
def test_a_copy_of_the_config_can_be_changed(how):
    config = frozen_config()
    mine = how(config)
    assert isinstance(mine, JobConfig) and mine.as_document() == config.as_document()
    mine["run"]["samples"] = "5"
    mine.add_section("new")
    assert (mine.getint("run", "samples"), mine.getfilesize("run", "scratch"), config.getint("run", "samples")) == (5, 64 * 2**20, 200)


def test_a_value_that_does_not_convert_names_its_section_and_key():
    """A job's getint / getfloat / getboolean / getfilesize of a bad value: the error names where
    in config.ini to look, and is still a ValueError (a job may catch it)."""
    config = JobConfig()
    config.read_dict({"exp": {"scratch": "12 parsecs", "n": "ten", "flag": "maybe", "ok": "64MiB"}})
    with pytest.raises(ValueError, match=r"^config.ini \[exp\] scratch: '12 parsecs' is not a file size"):
        config.getfilesize("exp", "scratch")
    with pytest.raises(ValueError, match=r"^config.ini \[exp\] scratch: "):
        config["exp"].getfilesize("scratch")  # through the section, too
    with pytest.raises(ValueError, match=r"^config.ini \[exp\] n: invalid literal for int"):
        config.getint("exp", "n")
    with pytest.raises(ValueError, match=r"^config.ini \[exp\] flag: Not a boolean"):
        config.getboolean("exp", "flag")
    assert config.getfilesize("exp", "ok") == 64 * 2**20 and config.getint("exp", "missing", fallback=3) == 3


def test_the_readme_s_config_examples_load_as_they_are(tmp_path):
    """Its example had comments after values, which config.ini refuses in jobsplit's sections."""
    from jobsplit.balance import balance_config
    from jobsplit.config import jobsplit_settings, log_settings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in readme.split("```ini\n")[1:]]
    examples = [block for block in blocks if block.lstrip().startswith(("[jobsplit]", "[logging]", "[balance]"))]
    assert len(examples) >= 2, "the README's config.ini examples moved"
    for number, text in enumerate(examples):
        path = write_config_dir(tmp_path / str(number), config=text) / "config.ini"
        config = load_config(path)
        assert inline_comments(config, path) == []
        jobsplit_settings(config, path), log_settings(config, path), balance_config(config, path)


def test_a_default_section_never_hides_nor_sets_jobsplit_s_own_settings(tmp_path):
    """A [DEFAULT] section lends its keys to every section, the job's defaults: a key jobsplit's
    sections set too was taken for a default and dropped, so [DEFAULT] timeout = 5 wiped out
    [jobsplit] timeout = 3600 (no timeout at all), [DEFAULT] url = https://... the queue's URL
    (no queue), without a word; and [DEFAULT] level = hard failed [logging] on a key it never
    set. jobsplit's settings are its sections' own keys only."""
    from jobsplit.balance import balance_config
    from jobsplit.config import jobsplit_settings

    path = tmp_path / "config.ini"
    path.write_text(
        "[DEFAULT]\ntimeout = 5\nstrategy = quota\nurl = https://example.org/data\nlevel = hard\n\n"
        "[jobsplit]\nstrategy = rendezvous\ntimeout = 3600\n\n[balance]\nurl = redis://127.0.0.1:6379/0\n\n[logging]\nper_job = true\n\n"
        "[montecarlo]\nsamples = 1000\n"
    )
    config = load_config(path)
    settings = jobsplit_settings(config, path)
    assert (settings.strategy, settings.timeout) == ("rendezvous", 3600.0)
    assert balance_config(config, path).url == "redis://127.0.0.1:6379/0"
    logging_settings = log_settings(config, path)
    assert (logging_settings.level, logging_settings.per_job) == ("INFO", True)
    assert config["montecarlo"]["timeout"] == "5"  # the job's sections still get the defaults
    path.write_text("[DEFAULT]\ntimeout = 5\n\n[jobsplit]\nstrategy = quota\n")
    assert jobsplit_settings(load_config(path), path).timeout is None  # a default is the job's, not jobsplit's


@pytest.mark.parametrize(("name", "key"), [("JobSplit", "strategy = rendezvous"), ("jobsplit ", "timeout = 60"), ("LOGGING", "level = DEBUG"), ("Balance", "lease = 30")])
def test_a_section_of_jobsplit_s_written_in_other_case_is_refused(tmp_path, name, key):
    """[JobSplit] strategy = rendezvous was a section of the job's: a quota plan, no timeout,
    without a word (unknown keys in [jobsplit] are refused so that a typo is not ignored). A
    job's own section of such a name, without jobsplit's keys, is the job's."""
    path = tmp_path / "config.ini"
    path.write_text(f"[{name}]\n{key}\n")
    with pytest.raises(UserError, match=rf"\[{name}\]: jobsplit's section is \[{name.strip().lower()}\] \(section names are case-sensitive\); rename it"):
        load_config(path)
    path.write_text(f"[{name}]\nmass = 12.5\n")
    assert load_config(path)[name]["mass"] == "12.5"


def test_sizes_beyond_a_decimal_s_precision_are_exact_and_bad_ones_say_so_once(tmp_path):
    """99999999999999999999999TiB (10^28 bytes or more) ended in decimal.InvalidOperation, a
    traceback, and in a job's config.getfilesize an exception that was no ValueError; a bad
    [logging] max_size named its key twice."""
    assert parse_filesize("99999999999999999999999TiB") == 99999999999999999999999 * 1024**4
    assert parse_filesize("0.0005KB") == 1 and parse_filesize("0.0004999KB") == 0  # halves round up, as before
    path = tmp_path / "config.ini"
    path.write_text("[logging]\nmax_size = -5MB\n")
    with pytest.raises(UserError) as info:
        log_settings(load_config(path), path)
    assert str(info.value).count("max_size") == 1, str(info.value)


@pytest.mark.parametrize("first", ["", "sep=,", "# columns of the study"])
def test_a_line_before_the_header_s_names_is_the_one_to_remove(tmp_path, first):
    """A blank first line, Excel's "sep=," or a comment: the advice was to remove the lines after
    the first, the column names themselves."""
    path = tmp_path / "header.csv"
    path.write_text(f"{first}\nRun Start Time,Job Running Time,Job Start Time,Value\n")
    with pytest.raises(UserError, match="line 1 is .*: header.csv must be one line of column names; remove that line, keeping the names"):
        load_header(path)
