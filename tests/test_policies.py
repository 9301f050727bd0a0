"""Tests for the self-contained ``policies`` package (units, model, config loading)."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from policies import (
    DEFAULT_REQUIRE,
    LAYERS,
    SCHEMA,
    ConfigError,
    GiB,
    KiB,
    MiB,
    Policy,
    PolicyError,
    Workers,
    format_duration,
    format_size,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)
from policies.paths import unsafe_reason

# --- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2s", 2.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("250us", 0.00025),
        ("3", 3.0),
        (" 2 s ", 2.0),
        ("0", 0.0),
        (".5s", 0.5),
        (5, 5.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration_good(value: object, seconds: float) -> None:
    assert parse_duration(value, where="t") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "s", "-1s", "2x", "2 sec", "1e3s", "nan", "inf", "2s2", -1, -0.5, math.nan, math.inf,
     True, False, None, [1], {"s": 1}],
)
def test_parse_duration_bad(value: object) -> None:
    with pytest.raises(PolicyError) as info:
        parse_duration(value, where="defaults.wall_time")
    assert info.value.path == "defaults.wall_time"
    assert "duration" in info.value.expected


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("256MiB", 256 * MiB),
        ("1GB", 10**9),
        ("1GiB", GiB),
        ("64KiB", 64 * KiB),
        ("10kB", 10_000),
        ("10KB", 10_000),
        ("10kib", 10 * KiB),
        ("512B", 512),
        ("512", 512),
        ("1.5MiB", 1_572_864),
        ("1.0000001KiB", 1024),  # rounded down
        (4096, 4096),
        (4096.0, 4096),
        (0, 0),
    ],
)
def test_parse_size_good(value: object, size: int) -> None:
    assert parse_size(value, where="t") == size


@pytest.mark.parametrize(
    "value",
    ["", "MiB", "-1MiB", "10K", "10 megabytes", "1.5", "1.5B", "12XB", 1.5, -1, math.inf,
     True, None, ["1MiB"]],
)
def test_parse_size_bad(value: object) -> None:
    with pytest.raises(PolicyError) as info:
        parse_size(value, where="providers.text.policy.memory")
    assert info.value.path == "providers.text.policy.memory"
    assert "bytes" in info.value.expected


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2, "2s"), (0.5, "500ms"), (0, "0s"), (3600, "1h"), (90, "1.5m"), (0.00025, "250us")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(256 * MiB, "256MiB"), (3 * GiB // 2, "1.5GiB"), (10**9, "1GB"), (512, "512B"),
     (0, "0B"), (64 * KiB, "64KiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@given(st.integers(min_value=0, max_value=2**70))
def test_format_size_round_trips_exactly(size: int) -> None:
    assert parse_size(format_size(size), where="t") == size


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_format_duration_round_trips_closely(seconds: float) -> None:
    back = parse_duration(format_duration(seconds), where="t")
    assert back == pytest.approx(seconds, rel=1e-6, abs=1e-12)


def test_error_message_is_one_line_and_pickles() -> None:
    err = PolicyError("providers.text.policy.memory", "a size", '"x\ny"', file="p.toml")
    assert str(err) == 'p.toml: providers.text.policy.memory: expected a size, got "x y"'
    assert "\n" not in str(err)
    assert str(PolicyError("memory", "a size", "1")) == "memory: expected a size, got 1"
    file_level = ConfigError("", "valid TOML", "syntax error: bad", file="p.toml")
    assert str(file_level) == "p.toml: expected valid TOML, got syntax error: bad"
    again = pickle.loads(pickle.dumps(file_level))
    assert type(again) is ConfigError
    assert (again.path, again.expected, again.got, again.file) == (
        "", "valid TOML", "syntax error: bad", "p.toml")
    assert isinstance(err, ValueError)


# --- model ------------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = Policy()
    assert policy.memory == 256 * MiB
    assert policy.wall_time == 30.0
    assert policy.workers == Workers(0, os.cpu_count() or 1)  # scale up to one per CPU
    assert (policy.idle_timeout, policy.queue, policy.max_calls, policy.retries) == (60, 1000, 0, 0)
    assert set(DEFAULT_REQUIRE) <= set(LAYERS)
    assert LAYERS[0] == "pdeathsig"
    assert LAYERS[-1] == "cgroups"


def test_policy_kwargs_are_normalised() -> None:
    policy = Policy(
        memory="256MiB",
        wall_time="2s",
        cpu_time=1,
        workers={"min": 1, "max": 4},
        read=["/data"],
        write=("/tmp/out",),
        env=["HOME", "LANG"],
        require=["seccomp", "rlimits", "pdeathsig", "rlimits"],
        allow_missing=True,
    )
    assert policy.memory == 256 * MiB
    assert Policy().input == 1 * MiB and Policy(input="20MiB").input == 20 * MiB
    assert policy.wall_time == 2.0
    assert isinstance(policy.cpu_time, float)
    assert policy.workers == Workers(min=1, max=4)
    assert policy.read == ("/data",)
    assert policy.write == ("/tmp/out",)
    assert policy.env == ("HOME", "LANG")
    assert policy.require == ("pdeathsig", "rlimits", "seccomp")  # layer order, deduplicated
    assert policy == Policy(memory=256 * MiB, wall_time=2.0, cpu_time=1.0, workers=Workers(1, 4),
                            read=("/data",), write=("/tmp/out",), env=("HOME", "LANG"),
                            require=("seccomp", "pdeathsig", "rlimits"), allow_missing=True)
    hash(policy)


@pytest.mark.parametrize(
    ("kwargs", "path", "fragment"),
    [
        ({"memory": "lots"}, "memory", "a size such as 256MiB"),
        ({"memory": "1MiB"}, "memory", "at least 16MiB"),
        ({"wall_time": 0}, "wall_time", "greater than zero"),
        ({"cpu_time": "fast"}, "cpu_time", "a duration"),
        ({"processes": 0}, "processes", "an integer >= 1"),
        ({"processes": True}, "processes", "an integer"),
        ({"open_files": 8}, "open_files", "an integer >= 16"),
        ({"output": 0}, "output", "at least 1B"),
        ({"input": 1}, "input", "at least 2B"),
        ({"input": "big"}, "input", "a size such as 256MiB"),
        ({"network": 1}, "network", "a boolean"),
        ({"allow_missing": "yes"}, "allow_missing", "a boolean"),
        ({"read": "/data"}, "read", "a list of absolute paths"),
        ({"read": ["data"]}, "read[0]", "an absolute path"),
        ({"write": ["/ok", 3]}, "write[1]", "a string"),
        ({"env": ["OK", "NOT-OK"]}, "env[1]", "an environment variable name"),
        ({"env": ["1X"]}, "env[0]", "an environment variable name"),
        ({"workers": {"min": 3, "max": 2}}, "workers.min", "no greater than workers.max (2)"),
        ({"workers": {"max": 0}}, "workers.max", "an integer >= 1"),
        ({"workers": {"min": 1, "extra": 2}}, "workers.extra", "known keys: min, max"),
        ({"workers": 4}, "workers", "a table with min and max"),
        ({"require": ["pdeathsig", "rlimits", "seatbelt"]}, "require[2]", "cgroups"),
        ({"require": ["seccomp"]}, "require", "allow_missing"),
    ],
)
def test_policy_bad_values(kwargs: dict[str, object], path: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy(**kwargs)  # type: ignore[arg-type]
    assert info.value.path == path
    assert fragment in info.value.expected


def test_unknown_layer_error_lists_known_layers() -> None:
    with pytest.raises(PolicyError) as info:
        Policy(require=["pdeathsig", "rlimits", "seatbelt"])
    assert '"seatbelt"' in info.value.got
    for layer in LAYERS:
        assert layer in info.value.expected


def test_allow_missing_permits_dropping_default_layers() -> None:
    policy = Policy(require=[], allow_missing=True)
    assert policy.require == ()


def test_from_mapping_unknown_key() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({"memroy": "1GiB"}, path="providers.text.policy", file="x.toml")
    err = info.value
    assert err.path == "providers.text.policy.memroy"
    assert err.expected.startswith("one of the known keys: wall_time, cpu_time, memory")
    assert "memroy" in err.got
    assert str(err).startswith("x.toml: providers.text.policy.memroy: expected one of")


def test_from_mapping_prefixes_value_errors() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_mapping({"workers": {"min": 5}}, path="defaults")
    assert info.value.path == "defaults.workers.min"


def test_merged_replaces_only_given_keys() -> None:
    base = Policy(memory="1GiB", network=True, workers={"min": 1, "max": 2})
    merged = base.merged({"wall_time": "5s", "workers": {"max": 8}})
    assert merged.memory == GiB
    assert merged.network is True
    assert merged.wall_time == 5.0
    assert merged.workers == Workers(0, 8)  # whole value replaced, not deep-merged
    assert base.wall_time == 30.0
    with pytest.raises(PolicyError) as info:
        base.merged({"memory": "tiny"}, path="providers.a.policy")
    assert info.value.path == "providers.a.policy.memory"


def test_describe_rows() -> None:
    rows = Policy(memory="1.5GiB", wall_time="500ms", read=["/a", "/b"]).describe()
    table = {key: value for key, value, _ in rows}
    assert [key for key, _, _ in rows] == list(Policy.field_names())
    assert table["memory"] == "1.5GiB"
    assert table["wall_time"] == "500ms"
    assert table["read"] == "/a, /b"
    assert table["workers"] == f"min 0, max {os.cpu_count() or 1}"
    assert all(meaning and "\n" not in meaning for _, _, meaning in rows)


_durations = st.one_of(
    st.floats(min_value=1e-6, max_value=1e7, allow_nan=False, allow_infinity=False),
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from(["2s", "500ms", "1.5m", "1h", "250us"]),
)
_sizes = st.one_of(st.integers(min_value=16 * MiB, max_value=2**50),
                   st.sampled_from(["256MiB", "1GB", "1.5GiB", "16MiB"]))
#: Absolute paths a policy accepts (not "/", a home or a directory holding one).
_paths = st.lists(
    st.from_regex(r"/[a-z0-9_./-]{0,20}", fullmatch=True).filter(lambda p: not unsafe_reason(p)),
    max_size=4,
)
_names = st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True), max_size=4)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    low = draw(st.integers(min_value=0, max_value=16))
    allow_missing = draw(st.booleans())
    require = draw(st.lists(st.sampled_from(LAYERS), max_size=len(LAYERS)))
    if not allow_missing:
        require = [*require, *DEFAULT_REQUIRE]
    return Policy(
        wall_time=draw(_durations),
        cpu_time=draw(_durations),
        memory=draw(_sizes),
        processes=draw(st.integers(min_value=1, max_value=4096)),
        open_files=draw(st.integers(min_value=16, max_value=65536)),
        file_size=draw(st.integers(min_value=0, max_value=2**40)),
        output=draw(st.integers(min_value=1, max_value=2**40)),
        log=draw(st.integers(min_value=0, max_value=2**30)),
        workdir=draw(st.integers(min_value=MiB, max_value=2**40)),
        network=draw(st.booleans()),
        read=draw(_paths),
        write=draw(_paths),
        env=draw(_names),
        workers={"min": low, "max": draw(st.integers(min_value=max(low, 1), max_value=64))},
        require=require,
        allow_missing=allow_missing,
    )


@given(policies())
def test_to_dict_round_trip(policy: Policy) -> None:
    data = policy.to_dict()
    assert Policy.from_mapping(data) == policy
    # And through JSON text, which is how it crosses process boundaries.
    assert Policy.from_mapping(json.loads(json.dumps(data))) == policy
    # The serialised form is also valid under the config file schema.
    doc = {"defaults": data, "providers": {"p": {"source": "m", "policy": data}}}
    assert not list(Draft202012Validator(SCHEMA).iter_errors(doc))


@given(policies())
def test_merged_with_own_dict_is_identity(policy: Policy) -> None:
    assert Policy().merged(policy.to_dict()) == policy


# --- config files -----------------------------------------------------------------------------


def test_schema_is_valid_and_matches_model() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert list(SCHEMA["$defs"]["policy"]["properties"]) == list(Policy.field_names())
    assert SCHEMA["$defs"]["policy"]["additionalProperties"] is False


GOOD_TOML = """
[defaults]
memory = "512MiB"
wall_time = "5s"
env = ["LANG"]

[providers.text]
source = "plugins/text.py"
policy = { wall_time = "500ms", workers = { min = 1, max = 4 } }

[providers.math]
source = "mathprov.actions:Provider"

[providers.abs]
source = "/opt/providers/abs.py"
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_toml_merges_defaults_and_resolves_sources(tmp_path: Path) -> None:
    path = _write(tmp_path, "sandbox.toml", GOOD_TOML)
    config = load_config(path)
    assert config.path == os.fspath(path)
    assert config.defaults == Policy(memory="512MiB", wall_time="5s", env=["LANG"])
    assert [p.name for p in config.providers] == ["text", "math", "abs"]

    text = config.provider("text")
    assert text.source == str(tmp_path / "plugins" / "text.py")
    assert text.policy.memory == 512 * MiB  # from defaults
    assert text.policy.env == ("LANG",)  # from defaults
    assert text.policy.wall_time == 0.5  # provider override
    assert text.policy.workers == Workers(1, 4)

    math_provider = config.provider("math")
    assert math_provider.source == "mathprov.actions:Provider"  # module refs left alone
    assert math_provider.policy == config.defaults
    assert config.provider("abs").source == "/opt/providers/abs.py"
    with pytest.raises(KeyError):
        config.provider("missing")


def test_relative_source_resolved_against_config_dir_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = _write(conf_dir, "c.toml",
                  '[providers.a]\nsource = "../p/a.py"\n[providers.b]\nsource = "sub/mod"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/c.toml")
    assert config.provider("a").source == str(tmp_path / "p" / "a.py")
    assert config.provider("b").source == str(conf_dir / "sub" / "mod")
    assert config.path == "conf/c.toml"
    assert path.exists()


def test_parse_config_directly() -> None:
    config = parse_config({"providers": {"x": {"source": "x.py"}}}, file="mem", base_dir="/base")
    assert config.provider("x").source == "/base/x.py"
    assert config.defaults == Policy()


def test_json_config_accepted(tmp_path: Path) -> None:
    doc = {
        "defaults": {"memory": 64 * MiB, "network": True},
        "providers": {"text": {"source": "pkg.text", "policy": {"cpu_time": "2s"}}},
    }
    config = load_config(_write(tmp_path, "sandbox.json", json.dumps(doc)))
    text = config.provider("text")
    assert text.policy.memory == 64 * MiB
    assert text.policy.network is True
    assert text.policy.cpu_time == 2.0


def test_json_in_toml_named_file_accepted(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "c.toml", '{"providers": {"t": {"source": "t"}}}'))
    assert config.provider("t").source == "t"


def test_empty_file_is_default_config(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "empty.toml", ""))
    assert config.defaults == Policy()
    assert config.providers == ()


_P = "[providers.text]\nsource = \"text.mod\"\n"


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ('[defaults]\nmemroy = "1GiB"\n', "defaults.memroy", "one of the known keys: wall_time"),
        ('extra = 1\n', "extra", "one of the known keys: defaults, providers"),
        (_P + 'colour = "red"\n', "providers.text.colour", "one of the known keys: source, policy"),
        (_P + 'policy = { memory = "lots" }\n', "providers.text.policy.memory",
         "a size such as 256MiB or a number of bytes"),
        (_P + 'policy = { memory = "1MiB" }\n', "providers.text.policy.memory", "at least 16MiB"),
        (_P + 'policy = { wall_time = "soon" }\n', "providers.text.policy.wall_time",
         "a duration such as 2s"),
        (_P + "policy = { wall_time = true }\n", "providers.text.policy.wall_time", "a duration"),
        (_P + "policy = { wall_time = -1 }\n", "providers.text.policy.wall_time", ">= 0"),
        (_P + "policy = { network = 1 }\n", "providers.text.policy.network", "a boolean"),
        (_P + 'policy = { processes = "many" }\n', "providers.text.policy.processes",
         "an integer"),
        (_P + "policy = { open_files = 4 }\n", "providers.text.policy.open_files", ">= 16"),
        (_P + 'policy = { read = "/data" }\n', "providers.text.policy.read", "a list"),
        (_P + 'policy = { read = ["data"] }\n', "providers.text.policy.read[0]",
         "an absolute path"),
        (_P + 'policy = { env = ["A-B"] }\n', "providers.text.policy.env[0]",
         "an environment variable name"),
        (_P + "policy = { workers = { min = 3, max = 2 } }\n",
         "providers.text.policy.workers.min", "no greater than workers.max"),
        (_P + "policy = { workers = { least = 3 } }\n", "providers.text.policy.workers.least",
         "one of the known keys: min, max"),
        (_P + 'policy = { require = ["bogus"] }\n', "providers.text.policy.require[0]",
         "a known layer name"),
        (_P + 'policy = { require = ["seccomp"] }\n', "providers.text.policy.require",
         "allow_missing"),
        ('[defaults]\nworkers = 3\n', "defaults.workers", "a table with min and max"),
        ('[providers.1bad]\nsource = "x"\n', "providers.1bad", "a provider name"),
        ('[providers.text]\npolicy = {}\n', "providers.text.source", "a provider reference"),
        ('[providers.text]\nsource = ""\n', "providers.text.source", "a provider reference"),
        ('[providers.text]\nsource = "not a module"\n', "providers.text.source",
         "a provider reference"),
        (_P + 'policy = { workdir = "lots" }\n', "providers.text.policy.workdir",
         "a size such as 256MiB"),
        (_P + 'policy = { workdir = "512KiB" }\n', "providers.text.policy.workdir",
         "a size of at least 1MiB"),
        ("[providers]\ntext = 3\n", "providers.text", "a provider table"),
        ('providers = "all"\n', "providers", "a table of providers"),
    ],
)
def test_config_errors_name_file_path_and_expectation(
    tmp_path: Path, text: str, path: str, fragment: str
) -> None:
    file = _write(tmp_path, "sandbox.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    err = info.value
    assert err.path == path
    assert fragment in err.expected
    assert err.file == os.fspath(file)
    message = str(err)
    assert "\n" not in message
    assert message.startswith(f"{file}: {path}: expected ")
    assert "sandbox.toml" in message


def test_unknown_key_error_names_the_key(tmp_path: Path) -> None:
    file = _write(tmp_path, "c.toml", '[defaults]\nmemroy = "1GiB"\n')
    with pytest.raises(ConfigError, match=r"got unknown key \"memroy\"$"):
        load_config(file)


def test_toml_syntax_error(tmp_path: Path) -> None:
    file = _write(tmp_path, "broken.toml", "[defaults]\nmemory = = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    err = info.value
    assert err.path == ""
    assert err.expected == "valid TOML"
    assert "line 2" in err.got
    assert re.fullmatch(rf"{re.escape(str(file))}: expected valid TOML, got syntax error: .+",
                        str(err))


def test_json_syntax_error(tmp_path: Path) -> None:
    file = _write(tmp_path, "broken.json", '{"providers": {\n')
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert info.value.expected == "valid JSON"
    assert "line 2" in info.value.got
    assert str(info.value).startswith(f"{file}: expected valid JSON, got syntax error")


def test_json_top_level_must_be_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a table"):
        load_config(_write(tmp_path, "list.json", "[1, 2]"))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: expected an existing config file, got no such file"
    with pytest.raises(ConfigError, match="expected a readable config file"):
        load_config(tmp_path)  # a directory
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="expected UTF-8 text"):
        load_config(binary)


def test_config_errors_are_policy_errors(tmp_path: Path) -> None:
    file = _write(tmp_path, "c.toml", '[defaults]\nmemory = "1MiB"\n')
    with pytest.raises(PolicyError):
        load_config(file)


def test_workdir_is_a_size_with_a_floor() -> None:
    """The workdir's tmpfs size: 64MiB by default, units accepted, below 1MiB refused (a
    tmpfs of ``size=0`` would be unlimited, the opposite of a bound)."""
    assert Policy().workdir == 64 * MiB
    assert Policy(workdir="32MiB").workdir == 32 * MiB
    assert Policy.from_mapping({"workdir": 2_000_000}).workdir == 2_000_000
    rows = {key: shown for key, shown, _meaning in Policy(workdir="32MiB").describe()}
    assert rows["workdir"] == "32MiB"
    for bad, expected in ((0, "at least 1MiB"), ("1KiB", "at least 1MiB"),
                          ("lots", "a size"), (True, "a size"), (-5, "a size")):
        with pytest.raises(PolicyError) as info:
            Policy(workdir=bad)
        assert info.value.path == "workdir"
        assert expected in info.value.expected
