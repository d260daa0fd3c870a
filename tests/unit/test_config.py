"""Settings: defaults, environment and override precedence, and readable validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from recengine.config import Settings, parse_url
from recengine.declare import docs_of, settings_of
from recengine.errors import ConfigError


def test_defaults_put_every_embedded_backend_under_data_dir(tmp_path: Path) -> None:
    s = Settings.load(env={"RECENGINE_DATA_DIR": str(tmp_path)})
    assert s.url("events").scheme == "file"
    assert s.url("events").file_path == tmp_path / "events.jsonl"
    assert s.url("dlq").file_path == tmp_path / "events.dlq.jsonl"
    assert s.url("users").scheme == "sqlite"
    assert s.url("users").file_path == tmp_path / "users.db"
    assert s.url("artifacts").file_path == tmp_path / "artifacts"
    assert s.url("cache").scheme == "memory"
    assert s.url("metrics").scheme == "off"


def test_relative_data_dir_gives_relative_paths() -> None:
    s = Settings.load(env={"RECENGINE_DATA_DIR": "data/run1"})
    assert s.url("events").file_path == Path("data/run1/events.jsonl")
    assert s.url("users").file_path == Path("data/run1/users.db")


def test_environment_sets_fields_with_their_types(tmp_path: Path) -> None:
    env = {
        "RECENGINE_DATA_DIR": str(tmp_path),
        "RECENGINE_DIM": "16",
        "RECENGINE_LR": "0.5",
        "RECENGINE_FOLLOW": "false",
        "RECENGINE_NAME": "movies",
        "RECENGINE_EVENTS_URL": "file:///srv/events.csv",
    }
    s = Settings.load(env=env)
    assert (s.dim, s.lr, s.follow, s.name) == (16, 0.5, False, "movies")
    assert s.url("events").file_path == Path("/srv/events.csv")
    assert s.events_topic == "movies.events"
    assert s.dlq_topic == "movies.events.dlq"


def test_overrides_beat_environment_which_beats_defaults(tmp_path: Path) -> None:
    env = {"RECENGINE_DATA_DIR": str(tmp_path), "RECENGINE_DIM": "16", "RECENGINE_LR": "0.5"}
    s = Settings.load({"dim": "8", "lr": None}, env=env)
    assert s.dim == 8  # override (a CLI string, coerced)
    assert s.lr == 0.5  # None means "flag not given": the environment stands
    assert s.reg == Settings.reg  # neither: the default
    assert Settings.load({"dim": 4}, env=env).dim == 4  # typed overrides pass as they are


def test_data_dir_override_moves_the_derived_urls(tmp_path: Path) -> None:
    env = {"RECENGINE_DATA_DIR": "/elsewhere"}
    s = Settings.load({"data_dir": str(tmp_path)}, env=env)
    assert s.url("users").file_path == tmp_path / "users.db"


def test_explicit_urls_are_not_replaced_by_derived_ones(tmp_path: Path) -> None:
    s = Settings.load({"users_url": "sqlite:////var/lib/users.db"},
                      env={"RECENGINE_DATA_DIR": str(tmp_path)})
    assert s.url("users").file_path == Path("/var/lib/users.db")
    assert s.url("events").file_path == tmp_path / "events.jsonl"


def test_environment_does_not_leak_from_os_environ_when_env_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECENGINE_DIM", "7")
    assert Settings.load(env={}).dim == Settings.dim
    assert Settings.load().dim == 7


@pytest.mark.parametrize(("env", "fragment"), [
    ({"RECENGINE_DIM": "sixty-four"}, "setting dim = 'sixty-four' is not a valid int"),
    ({"RECENGINE_LR": "fast"}, "setting lr = 'fast' is not a valid float"),
    ({"RECENGINE_FOLLOW": "maybe"}, "setting follow = 'maybe' is not a valid bool"),
    ({"RECENGINE_FOLLOW": "flase"}, "(RECENGINE_FOLLOW)"),
    ({"RECENGINE_USERS_URL": "postgres://db/users"}, "unknown scheme 'postgres'"),
    ({"RECENGINE_EVENTS_URL": "/data/events.jsonl"}, "has no scheme"),
    ({"RECENGINE_INDEX_URL": "http://:8081"}, "names no host"),
    ({"RECENGINE_INDEX_URL": "http://index:port"}, "is malformed"),
    ({"RECENGINE_USERS_URL": "sqlite:///"}, "names no database file"),
    ({"RECENGINE_DIM": "0"}, "dim must be positive"),
    ({"RECENGINE_OPTIMIZER": "adam"}, "optimizer must be sgd or adagrad"),
    ({"RECENGINE_INDEX_VERSION": "newest"}, "index_version must be a number or 'latest'"),
    ({"RECENGINE_EVENT_WEIGHTS": "view:1"}, "must look like 'view=1,click=2,purchase=4'"),
])
def test_bad_values_raise_config_error_with_a_readable_message(env: dict[str, str],
                                                               fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(env=env)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message  # one line for the operator


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'dimension'"):
        Settings.load({"dimension": 8}, env={})


def test_unknown_scheme_lists_the_accepted_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_url("artifacts", "s3://bucket/versions")
    assert "expected one of file://" in str(info.value)


def test_file_urls_accept_relative_and_absolute_paths() -> None:
    assert parse_url("events", "file://data/events.jsonl").file_path == Path(
        "data/events.jsonl")
    assert parse_url("events", "file:///data/events.jsonl").file_path == Path(
        "/data/events.jsonl")


def test_sqlite_urls_follow_the_sqlalchemy_convention() -> None:
    assert parse_url("users", "sqlite:///rel.db").file_path == Path("rel.db")
    assert parse_url("users", "sqlite:////abs/users.db").file_path == Path("/abs/users.db")


def test_http_url_is_parsed_into_host_and_port() -> None:
    url = parse_url("index", "http://index.svc:8081")
    assert (url.scheme, url.host, url.port) == ("http", "index.svc", 8081)


def test_metrics_off_and_statsd() -> None:
    assert parse_url("metrics", "off").scheme == "off"
    url = parse_url("metrics", "statsd://graphite:8125")
    assert (url.scheme, url.host, url.port) == ("statsd", "graphite", 8125)


def test_replace_validates_again() -> None:
    s = Settings.load(env={})
    assert s.replace(dim=8).dim == 8
    with pytest.raises(ConfigError, match="growth must be in"):
        s.replace(growth=0)


def test_weights_parse_the_event_weight_table() -> None:
    s = Settings.load({"event_weights": "view=1, purchase=4.5"}, env={})
    assert s.weights == {"view": 1.0, "purchase": 4.5}


def test_every_setting_has_a_flag_a_variable_and_a_docstring() -> None:
    settings = {s.name: s for s in settings_of(Settings)}
    assert {"dim", "events_url", "api_max_batch", "index_version"} <= set(settings)
    assert settings["batch_size"].flag == "--batch-size"
    assert settings["batch_size"].env == "RECENGINE_BATCH_SIZE"
    assert [name for name, doc in docs_of(Settings).items() if not doc] == []


def test_a_flag_is_parsed_as_its_environment_variable_is() -> None:
    for raw in ("no", " On ", "0", "TRUE", "flase", ""):
        from_env = from_flag = None
        try:
            from_env = Settings.load(env={"RECENGINE_FOLLOW": raw}).follow
        except ConfigError as exc:
            from_env = str(exc).replace("(RECENGINE_FOLLOW)", "(source)")
        try:
            from_flag = Settings.load({"follow": raw}, env={}).follow
        except ConfigError as exc:
            from_flag = str(exc).replace("(--follow)", "(source)")
        assert from_env == from_flag, raw


def test_typed_overrides_of_the_wrong_type_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"setting dim = 4.5 is not a valid int \(--dim\)"):
        Settings.load({"dim": 4.5}, env={})
    assert Settings.load({"lr": 1}, env={}).lr == 1.0


def test_secrets_and_url_passwords_never_show_in_repr() -> None:
    s = Settings.load({"api_key": "k3y-value", "users_url": "mongodb://app:hunter2@db:27017/recs",
                       "cache_url": "redis://:s3cret@cache:6379/0"}, env={})
    for shown in (repr(s), str(s)):
        assert "k3y-value" not in shown and "hunter2" not in shown and "s3cret" not in shown
        assert "api_key='***'" in shown
        assert "users_url='mongodb://app:***@db:27017/recs'" in shown
        assert "cache_url='redis://:***@cache:6379/0'" in shown
    assert "hunter2" not in repr(s.url("users"))
    assert s.url("users").redacted == "mongodb://app:***@db:27017/recs"
    assert s.api_key == "k3y-value" and s.url("users").raw.endswith("hunter2@db:27017/recs")


@pytest.mark.parametrize("raw", [
    "mongodb://app:hunter2@db:port/recs",  # malformed port
    "app:hunter2@db:27017",  # no scheme
    "postgres://app:hunter2@db/recs",  # unknown scheme
    "mongodb://app:hunter2@/recs",  # no host
])
def test_a_bad_url_is_reported_without_its_password(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({"users_url": raw}, env={})
    assert "hunter2" not in str(info.value)
    assert "app:***@" in str(info.value)


def test_a_secret_of_the_wrong_type_is_reported_hidden() -> None:
    with pytest.raises(ConfigError, match=r"api_key = '\*\*\*' is not a valid text"):
        Settings.load({"api_key": 1234567}, env={})


def test_to_env_is_what_load_reads_back(tmp_path: Path) -> None:
    s = Settings.load({"data_dir": str(tmp_path), "dim": 8, "lr": 0.1 + 0.2, "follow": False,
                       "api_key": "k", "users_url": "mongodb://u:p@db/recs",
                       "cooc_half_life_events": 1e-7, "self_tuning": False}, env={})
    env = s.to_env()
    assert env["RECENGINE_FOLLOW"] == "false" and env["RECENGINE_DIM"] == "8"
    assert Settings.load(env=env) == s
