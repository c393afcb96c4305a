"""Settings: TOML file plus environment, the environment winning; bad values named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from signoff.config import (
    DEFAULT_LLM_RETRIES,
    DEFAULT_LLM_TIMEOUT,
    DEFAULT_SESSION_LIFETIME,
    DEFAULT_SESSION_TTL,
    MIN_ADMIN_KEY_LENGTH,
    MIN_SECRET_LENGTH,
    SLACK_API_URL,
    ConfigError,
    LLMSettings,
    Settings,
    Site,
    SlackSettings,
    WebhookSettings,
    load_settings,
    origin_matches,
)
from signoff.engine.notify import EventType

SECRET = "s" * MIN_SECRET_LENGTH
ENV = {"SIGNOFF_SECRET": SECRET}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "signoff.toml"
    path.write_text(text)
    return path


def test_defaults_from_env_only() -> None:
    settings = load_settings(env=ENV)
    assert settings == Settings(secret=SECRET)
    assert settings.store == "memory://"
    assert settings.audit == "sqlite:///signoff.db"
    assert settings.session_ttl == DEFAULT_SESSION_TTL
    assert settings.admin_key is None
    assert settings.sites == {}


def test_toml_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
secret = "{SECRET}"
store = "redis://localhost:6379/0"
audit = "postgresql://db/signoff"
session_ttl = 600
admin_key = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
sweep_interval = 0.5

[sites.shop]
origins = ["https://shop.example", "http://localhost:*"]
""",
    )
    settings = load_settings(path, env={})
    assert settings.secret == SECRET
    assert settings.store == "redis://localhost:6379/0"
    assert settings.audit == "postgresql://db/signoff"
    assert settings.session_ttl == 600.0
    assert settings.admin_key == "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    assert settings.sweep_interval == 0.5
    assert settings.sites == {"shop": Site("shop", ("https://shop.example", "http://localhost:*"))}


def test_env_wins_over_toml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'secret = "from-the-toml-file-0123"\nstore = "memory://"\nsession_ttl = 600\n',
    )
    env = {
        "SIGNOFF_SECRET": "from-the-environment-0123",
        "SIGNOFF_STORE": "redis://cache:6379/1",
        "SIGNOFF_AUDIT": "sqlite:///other.db",
        "SIGNOFF_SESSION_TTL": "120",
        "SIGNOFF_ADMIN_KEY": "key-from-the-environment-0123456789",
    }
    settings = load_settings(path, env=env)
    assert settings.secret == "from-the-environment-0123"
    assert settings.store == "redis://cache:6379/1"
    assert settings.audit == "sqlite:///other.db"
    assert settings.session_ttl == 120.0
    assert settings.admin_key == "key-from-the-environment-0123456789"


def test_empty_env_value_does_not_override_toml(tmp_path: Path) -> None:
    path = write(tmp_path, f'secret = "{SECRET}"\nsession_ttl = 600\n')
    settings = load_settings(path, env={"SIGNOFF_SESSION_TTL": "", "SIGNOFF_SECRET": ""})
    assert settings.secret == SECRET
    assert settings.session_ttl == 600.0


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNOFF_SECRET", "from-os-environ-0123")
    monkeypatch.delenv("SIGNOFF_SESSION_TTL", raising=False)
    assert load_settings().secret == "from-os-environ-0123"


def test_missing_secret_outside_demo_is_an_error() -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_SECRET"):
        load_settings(env={})


def test_demo_generates_a_secret() -> None:
    first = load_settings(env={}, demo=True).secret
    second = load_settings(env={}, demo=True).secret
    assert len(first) >= MIN_SECRET_LENGTH
    assert first != second


def test_demo_keeps_a_given_secret() -> None:
    assert load_settings(env=ENV, demo=True).secret == SECRET


def test_short_secret_is_an_error() -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_SECRET"):
        load_settings(env={"SIGNOFF_SECRET": "s" * (MIN_SECRET_LENGTH - 1)})


@pytest.mark.parametrize("value", ["short", "x" * (MIN_ADMIN_KEY_LENGTH - 1), 12345])
def test_a_guessable_or_non_string_admin_key_is_an_error(tmp_path: Path, value: object) -> None:
    path = write(tmp_path, f"admin_key = {value!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match=r"signoff\.toml: admin_key: must be a string"):
        load_settings(path, env=ENV)


def test_non_string_secret_in_toml_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "secret = 12345678901234567890\n")
    with pytest.raises(ConfigError, match=r"signoff\.toml: secret: expected a string, got int"):
        load_settings(path, env={})


@pytest.mark.parametrize("value", ["abc", "-5", "0", "nan", "inf", "-inf", "1e999", " "])
def test_bad_session_ttl_from_env_is_an_error(value: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_SESSION_TTL"):
        load_settings(env={**ENV, "SIGNOFF_SESSION_TTL": value})


@pytest.mark.parametrize("value", ['"abc"', "-5", "0", "true", "[1]", "nan"])
def test_bad_session_ttl_from_toml_is_an_error(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"session_ttl = {value}\n")
    with pytest.raises(ConfigError, match=r"signoff\.toml: session_ttl: "):
        load_settings(path, env=ENV)


@pytest.mark.parametrize("value", ["1", "0.5", "86400", "1e3"])
def test_good_session_ttl(value: str) -> None:
    assert load_settings(env={**ENV, "SIGNOFF_SESSION_TTL": value}).session_ttl == float(value)


def test_a_session_lasts_a_day_from_its_start_unless_set() -> None:
    assert load_settings(env=ENV).session_lifetime == DEFAULT_SESSION_LIFETIME == 86400
    env = {**ENV, "SIGNOFF_SESSION_LIFETIME": "3600"}
    assert load_settings(env=env).session_lifetime == 3600


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf"])
def test_bad_session_lifetime_is_an_error(value: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_SESSION_LIFETIME"):
        load_settings(env={**ENV, "SIGNOFF_SESSION_LIFETIME": value})


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
def test_bad_sweep_interval_is_an_error(value: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_SWEEP_INTERVAL"):
        load_settings(env={**ENV, "SIGNOFF_SWEEP_INTERVAL": value})


def test_unknown_toml_keys_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, f'secret = "{SECRET}"\nsesion_ttl = 60\n')
    with pytest.raises(ConfigError, match="sesion_ttl"):
        load_settings(path, env={})


def test_unknown_keys_in_a_site_table_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[sites.shop]\norigins = ["https://shop.example"]\norigin = "https://x.example"\n'
    )
    with pytest.raises(ConfigError, match=r"sites\.shop"):
        load_settings(path, env=ENV)


def test_unreadable_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        load_settings(tmp_path / "missing.toml", env=ENV)


def test_invalid_toml_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "secret = \n")
    with pytest.raises(ConfigError, match="--config"):
        load_settings(path, env=ENV)


@pytest.mark.parametrize(
    "origin",
    [
        "shop.example",
        "ftp://shop.example",
        "https://shop.example/",
        "https://shop.example/path",
        "https://",
        "*",
        "https://*.example.com",
        "http://localhost:abc",
        "http://localhost:123456",
        "https://shop.example?x=1",
        "https://user@shop.example",
        " https://shop.example",
    ],
)
def test_bad_origins_are_rejected_naming_the_setting(tmp_path: Path, origin: str) -> None:
    path = write(tmp_path, f'[sites.shop]\norigins = ["{origin}"]\n')
    with pytest.raises(ConfigError, match=r"sites\.shop\.origins"):
        load_settings(path, env=ENV)


@pytest.mark.parametrize(
    "origin",
    [
        "https://shop.example",
        "http://localhost:8000",
        "http://localhost:*",
        "http://127.0.0.1:*",
        "http://[::1]:8000",
        "http://[::1]",
    ],
)
def test_good_origins_are_accepted(tmp_path: Path, origin: str) -> None:
    path = write(tmp_path, f'[sites.shop]\norigins = ["{origin}"]\n')
    assert load_settings(path, env=ENV).sites["shop"].origins == (origin,)


@pytest.mark.parametrize("origins", ['"https://shop.example"', "[1]", "{}"])
def test_origins_must_be_a_list_of_strings(tmp_path: Path, origins: str) -> None:
    path = write(tmp_path, f"[sites.shop]\norigins = {origins}\n")
    with pytest.raises(ConfigError, match=r"sites\.shop\.origins"):
        load_settings(path, env=ENV)


def test_site_without_origins_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[sites.shop]\n")
    with pytest.raises(ConfigError, match=r"sites\.shop\.origins"):
        load_settings(path, env=ENV)


@pytest.mark.parametrize("name", ["Shop", "-shop", "sh op", "shop.example", "x" * 65, "ünï"])
def test_bad_site_names_are_rejected_naming_the_setting(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, f'[sites."{name}"]\norigins = ["https://shop.example"]\n')
    with pytest.raises(ConfigError, match="sites"):
        load_settings(path, env=ENV)


def test_sites_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'sites = ["shop"]\n')
    with pytest.raises(ConfigError, match="sites"):
        load_settings(path, env=ENV)


@pytest.mark.parametrize(
    ("pattern", "origin", "expected"),
    [
        ("http://localhost:*", "http://localhost", True),
        ("http://localhost:*", "http://localhost:8000", True),
        ("http://localhost:*", "http://localhost:1", True),
        ("http://localhost:*", "http://localhost:", False),
        ("http://localhost:*", "http://localhost:80abc", False),
        ("http://localhost:*", "http://localhost:8000/", False),
        ("http://localhost:*", "http://localhost.evil.com", False),
        ("http://localhost:*", "http://localhost.evil.com:8000", False),
        ("http://localhost:*", "https://localhost:8000", False),
        ("http://localhost:*", "http://127.0.0.1:8000", False),
        ("http://127.0.0.1:*", "http://127.0.0.1:5173", True),
        ("https://shop.example", "https://shop.example", True),
        ("https://shop.example", "https://shop.example:443", False),
        ("https://shop.example", "http://shop.example", False),
        ("https://shop.example", "https://shop.example.evil", False),
        ("https://shop.example", "https://evil-shop.example", False),
        ("http://localhost:8000", "http://localhost:8001", False),
    ],
)
def test_origin_matches(pattern: str, origin: str, expected: bool) -> None:
    assert origin_matches(pattern, origin) is expected


def test_site_allows() -> None:
    site = Site("demo", ("http://localhost:*", "https://shop.example"))
    assert site.allows("http://localhost:3000")
    assert site.allows("https://shop.example")
    assert not site.allows("https://evil.example")
    assert not site.allows(None)
    assert not site.allows("null")
    assert not Site("empty", ()).allows("https://shop.example")


def test_self_is_an_origin_pattern_for_the_serving_host() -> None:
    from signoff.config import SELF, make_site

    site = make_site("demo", [SELF])
    assert site.allows("http://shop.local:8000", host="shop.local:8000")
    assert site.allows("https://shop.local", host="shop.local")
    assert not site.allows("http://evil.example", host="shop.local:8000")
    assert not site.allows("http://shop.local:8000", host=None)


# [llm] and SIGNOFF_LLM_* --------------------------------------------------------------

LLM_ENV = {**ENV, "SIGNOFF_LLM_BASE_URL": "http://127.0.0.1:11434/v1", "SIGNOFF_LLM_MODEL": "m"}


def test_no_llm_without_a_base_url() -> None:
    assert load_settings(env=ENV).llm is None


def test_llm_from_the_environment_with_defaults() -> None:
    assert load_settings(env=LLM_ENV).llm == LLMSettings(
        base_url="http://127.0.0.1:11434/v1",
        model="m",
        api_key=None,
        system_prompt=None,
        timeout=DEFAULT_LLM_TIMEOUT,
        max_retries=DEFAULT_LLM_RETRIES,
    )


def test_llm_table_with_the_environment_winning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[llm]
base_url = "https://api.openai.com/v1"
model = "gpt-from-toml"
api_key = "sk-toml"
system_prompt = "You sell shoes."
timeout = 12.5
max_retries = 0
""",
    )
    from_toml = load_settings(path, env=ENV).llm
    assert from_toml == LLMSettings(
        "https://api.openai.com/v1", "gpt-from-toml", "sk-toml", "You sell shoes.", 12.5, 0
    )
    env = {
        **ENV,
        "SIGNOFF_LLM_MODEL": "gpt-from-env",
        "SIGNOFF_LLM_API_KEY": "sk-env",
        "SIGNOFF_LLM_SYSTEM_PROMPT": "You sell hats.",
        "SIGNOFF_LLM_TIMEOUT": "3",
        "SIGNOFF_LLM_MAX_RETRIES": "4",
    }
    assert load_settings(path, env=env).llm == LLMSettings(
        "https://api.openai.com/v1", "gpt-from-env", "sk-env", "You sell hats.", 3.0, 4
    )


def test_the_system_prompt_may_come_from_a_file(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are the shop's assistant.\nBe brief.\n")
    env = {**LLM_ENV, "SIGNOFF_LLM_SYSTEM_PROMPT_FILE": str(prompt)}
    settings = load_settings(env=env).llm
    assert settings is not None
    assert settings.system_prompt == "You are the shop's assistant.\nBe brief.\n"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SIGNOFF_LLM_BASE_URL": "api.openai.com/v1"}, "SIGNOFF_LLM_BASE_URL"),
        ({"SIGNOFF_LLM_BASE_URL": "ftp://models.example"}, "SIGNOFF_LLM_BASE_URL"),
        ({"SIGNOFF_LLM_BASE_URL": "http://[::1"}, "SIGNOFF_LLM_BASE_URL"),
        ({"SIGNOFF_LLM_MODEL": ""}, "SIGNOFF_LLM_MODEL"),
        ({"SIGNOFF_LLM_TIMEOUT": "soon"}, "SIGNOFF_LLM_TIMEOUT"),
        ({"SIGNOFF_LLM_TIMEOUT": "0"}, "SIGNOFF_LLM_TIMEOUT"),
        ({"SIGNOFF_LLM_MAX_RETRIES": "-1"}, "SIGNOFF_LLM_MAX_RETRIES"),
        ({"SIGNOFF_LLM_MAX_RETRIES": "1.5"}, "SIGNOFF_LLM_MAX_RETRIES"),
        ({"SIGNOFF_LLM_MAX_RETRIES": "11"}, "SIGNOFF_LLM_MAX_RETRIES"),
        ({"SIGNOFF_LLM_SYSTEM_PROMPT_FILE": "/no/such/prompt.txt"}, "PROMPT_FILE"),
    ],
)
def test_bad_llm_settings_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env={**LLM_ENV, **env})


def test_llm_settings_without_a_base_url_are_an_error() -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_LLM_BASE_URL: required"):
        load_settings(env={**ENV, "SIGNOFF_LLM_MODEL": "gpt-4o-mini"})


def test_a_prompt_and_a_prompt_file_together_are_an_error(tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Be brief.")
    env = {
        **LLM_ENV,
        "SIGNOFF_LLM_SYSTEM_PROMPT": "x",
        "SIGNOFF_LLM_SYSTEM_PROMPT_FILE": str(prompt),
    }
    with pytest.raises(ConfigError, match="not both"):
        load_settings(env=env)


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('llm = "gpt"', "llm: expected a table"),
        (
            '[llm]\nbase_url = "http://x"\nmodel = "m"\ntemperature = 0',
            r"llm: unknown .*temperature",
        ),
        ('[llm]\nbase_url = "http://x"\nmodel = 4', r"toml: llm\.model: expected"),
        ('[llm]\nbase_url = "http://x"\nmodel = "m"\ntimeout = true', r"toml: llm\.timeout"),
        ('[llm]\nbase_url = "http://x"\nmodel = "m"\nmax_retries = 2.0', r"llm\.max_retries"),
        ('[llm]\nbase_url = "http://x"\nmodel = "m"\nmax_retries = true', r"llm\.max_retries"),
        ('[sites.shop]\norigins = []\n[sites.shop.llm]\nmodel = "m"', r"sites\.shop"),
    ],
)
def test_bad_llm_tables_are_named(tmp_path: Path, toml: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(write(tmp_path, toml), env=ENV)


# [slack] and SIGNOFF_SLACK_* ----------------------------------------------------------

SLACK_ENV = {
    **ENV,
    "SIGNOFF_SLACK_BOT_TOKEN": "xoxb-env",
    "SIGNOFF_SLACK_SIGNING_SECRET": "signing-env",
    "SIGNOFF_SLACK_CHANNEL": "C0APPROVALS",
}


def test_no_slack_unless_configured() -> None:
    assert load_settings(env=ENV).slack is None


def test_slack_from_the_environment_talks_to_slack_itself() -> None:
    assert load_settings(env=SLACK_ENV).slack == SlackSettings(
        "xoxb-env", "signing-env", "C0APPROVALS", SLACK_API_URL
    )


def test_slack_table_with_the_environment_winning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[slack]
bot_token = "xoxb-toml"
signing_secret = "signing-toml"
channel = "#approvals"
api_url = "http://127.0.0.1:9999/api/"
""",
    )
    assert load_settings(path, env=ENV).slack == SlackSettings(
        "xoxb-toml", "signing-toml", "#approvals", "http://127.0.0.1:9999/api/"
    )
    assert load_settings(path, env=SLACK_ENV).slack == SlackSettings(
        "xoxb-env", "signing-env", "C0APPROVALS", "http://127.0.0.1:9999/api/"
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"SIGNOFF_SLACK_BOT_TOKEN": "xoxb-1"},
            "SIGNOFF_SLACK_SIGNING_SECRET, SIGNOFF_SLACK_CHANNEL: required",
        ),
        ({"SIGNOFF_SLACK_API_URL": "http://127.0.0.1:1/api/"}, "SIGNOFF_SLACK_BOT_TOKEN, "),
        (
            {k: v for k, v in SLACK_ENV.items() if k != "SIGNOFF_SLACK_CHANNEL"},
            "SIGNOFF_SLACK_CHANNEL: required",
        ),
        ({**SLACK_ENV, "SIGNOFF_SLACK_API_URL": "slack.com/api"}, "SIGNOFF_SLACK_API_URL"),
    ],
)
def test_partial_or_bad_slack_settings_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env={**ENV, **env})


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('slack = "C1"', "slack: expected a table"),
        ('[slack]\nchannel = "C1"\nwebhook = "x"', r"slack: unknown .*webhook"),
        ('[slack]\nbot_token = 1\nsigning_secret = "s"\nchannel = "C1"', r"toml: slack\.bot_token"),
        ('[slack]\nbot_token = "x"\nsigning_secret = " "\nchannel = "C1"', r"slack\.signing_"),
    ],
)
def test_bad_slack_tables_are_named(tmp_path: Path, toml: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(write(tmp_path, toml), env=ENV)


# [[webhooks]] and SIGNOFF_WEBHOOK_* ----------------------------------------------------

HOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes, as the spec's example
HOOK_ENV = {
    **ENV,
    "SIGNOFF_WEBHOOK_URL": "https://hooks.example/signoff",
    "SIGNOFF_WEBHOOK_SECRET": HOOK_SECRET,
}


def test_no_webhooks_by_default() -> None:
    assert load_settings(env=ENV).webhooks == ()


def test_one_webhook_from_the_environment_gets_every_event() -> None:
    (hook,) = load_settings(env=HOOK_ENV).webhooks
    assert hook == WebhookSettings("https://hooks.example/signoff", HOOK_SECRET)
    assert {str(event) for event in hook.events} == {
        "card.waiting",
        "card.decided",
        "call.executed",
        "card.closed",
    }
    assert HOOK_SECRET not in repr(hook)  # settings may be logged; the key may not


def test_webhook_tables_with_the_environment_adding_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
[[webhooks]]
url = "https://payments.example/hooks"
secret = "{HOOK_SECRET}"
events = ["card.waiting"]
timeout = 2
attempts = 3
backoff = 0.5
max_backoff = 4

[[webhooks]]
url = "https://hooks.example/signoff"
secret = "{HOOK_SECRET}"
events = ["card.closed"]
""",
    )
    first, second = load_settings(path, env=ENV).webhooks
    assert first == WebhookSettings(
        "https://payments.example/hooks",
        HOOK_SECRET,
        frozenset({EventType.CARD_WAITING}),
        timeout=2.0,
        attempts=3,
        backoff=0.5,
        max_backoff=4.0,
    )
    assert second.events == {EventType.CARD_CLOSED}
    # The environment's endpoint replaces the table with its URL.
    kept, from_env = load_settings(path, env=HOOK_ENV).webhooks
    assert kept == first
    assert from_env.events == set(EventType)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SIGNOFF_WEBHOOK_URL": "hooks.example/x"}, "SIGNOFF_WEBHOOK_URL: expected an http"),
        ({"SIGNOFF_WEBHOOK_URL": "ftp://hooks.example"}, "SIGNOFF_WEBHOOK_URL"),
        ({"SIGNOFF_WEBHOOK_SECRET": ""}, "SIGNOFF_WEBHOOK_SECRET: required"),
        ({"SIGNOFF_WEBHOOK_URL": ""}, "SIGNOFF_WEBHOOK_URL: required"),
        ({"SIGNOFF_WEBHOOK_SECRET": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "expected whsec_"),
        ({"SIGNOFF_WEBHOOK_SECRET": "whsec_not base64!"}, "not valid base64"),
        ({"SIGNOFF_WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "at least 24 bytes"),
    ],
)
def test_bad_webhook_settings_are_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env={**HOOK_ENV, **env})


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('webhooks = "https://x"', r"webhooks: expected an array of tables"),
        ("[webhooks]\nurl = 'https://x'", r"webhooks: expected an array of tables"),
        ("[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\nheaders = 1", r"webhooks\[0\]: unknown"),
        ("[[webhooks]]\nsecret = 'S'", r"webhooks\[0\]\.url: required"),
        ("[[webhooks]]\nurl = 'https://x'", r"webhooks\[0\]\.secret: required"),
        ("[[webhooks]]\nurl = 'mailto:a@b'\nsecret = 'S'", r"webhooks\[0\]\.url"),
        ("[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\nevents = []", r"\.events"),
        (
            "[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\nevents = ['card.eaten']",
            r"webhooks\[0\]\.events: unknown event types \['card.eaten'\]; known",
        ),
        ("[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\nevents = [[1]]", r"\.events"),
        ("[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\nattempts = 0", r"\.attempts"),
        ("[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\nattempts = 2.5", r"\.attempts"),
        ("[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\ntimeout = -1", r"\.timeout"),
        ("[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\nmax_backoff = 1", r"\.max_backoff"),
        (
            "[[webhooks]]\nurl = 'https://x'\nsecret = 'S'\n[[webhooks]]\nurl = 'https://y'",
            r"webhooks\[1\]\.secret",
        ),
    ],
)
def test_bad_webhook_tables_are_named(tmp_path: Path, toml: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(write(tmp_path, toml.replace("'S'", f"'{HOOK_SECRET}'")), env=ENV)


def test_audit_retention_is_per_site_with_a_server_wide_default(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        'audit_retention_days = 90\n[sites.shop]\norigins = ["https://shop.example"]\n'
        'audit_retention_days = 7\n[sites.blog]\norigins = ["https://blog.example"]\n',
    )
    retention = load_settings(config, ENV).retention()
    assert (retention("shop"), retention("blog"), retention("gone")) == (7, 90, 90)
    assert load_settings(env=ENV).retention()("shop") is None  # kept for ever by default
    env = {**ENV, "SIGNOFF_AUDIT_RETENTION_DAYS": "30", "SIGNOFF_AUDIT_PURGE_INTERVAL": "60"}
    settings = load_settings(env=env)
    assert (settings.retention()("any"), settings.audit_purge_interval) == (30, 60.0)


def test_audit_exports_and_their_idle_timeout(tmp_path: Path) -> None:
    defaults = load_settings(env=ENV)
    assert (defaults.audit_exports, defaults.audit_export_idle_timeout) == (4, 30.0)
    config = write(tmp_path, "audit_exports = 2\naudit_export_idle_timeout = 5\n")
    settings = load_settings(config, {**ENV, "SIGNOFF_AUDIT_EXPORT_IDLE_TIMEOUT": "0.5"})
    assert (settings.audit_exports, settings.audit_export_idle_timeout) == (2, 0.5)
    for name, value in (
        ("SIGNOFF_AUDIT_EXPORTS", "0"),
        ("SIGNOFF_AUDIT_EXPORTS", "65"),
        ("SIGNOFF_AUDIT_EXPORTS", "two"),
        ("SIGNOFF_AUDIT_EXPORT_IDLE_TIMEOUT", "0"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_settings(env={**ENV, name: value})


def test_a_secret_made_up_for_a_command_is_not_taken_for_the_servers() -> None:
    given = load_settings(env=ENV, need_secret=False)
    made_up = load_settings(env={}, need_secret=False)
    assert given.secret_given and not made_up.secret_given and made_up.secret


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "forever"])
def test_a_bad_retention_from_env_is_named(value: str) -> None:
    with pytest.raises(ConfigError, match="SIGNOFF_AUDIT_RETENTION_DAYS"):
        load_settings(env={**ENV, "SIGNOFF_AUDIT_RETENTION_DAYS": value})


@pytest.mark.parametrize("value", ["0", "true", "2.5", '"a month"'])
def test_a_bad_site_retention_is_named(tmp_path: Path, value: str) -> None:
    config = write(
        tmp_path,
        f'[sites.shop]\norigins = ["https://shop.example"]\naudit_retention_days = {value}\n',
    )
    with pytest.raises(ConfigError, match=r"sites\.shop\.audit_retention_days"):
        load_settings(config, ENV)


def test_limits_per_client_address_have_defaults_and_can_be_set() -> None:
    settings = load_settings(env=ENV)
    assert (settings.address_message_rate, settings.address_session_rate) == (10.0, 30.0)
    env = {**ENV, "SIGNOFF_ADDRESS_MESSAGE_RATE": "50", "SIGNOFF_ADDRESS_SESSION_RATE": "600"}
    settings = load_settings(env=env)
    assert (settings.address_message_rate, settings.address_session_rate) == (50.0, 600.0)


@pytest.mark.parametrize("name", ["SIGNOFF_ADDRESS_MESSAGE_RATE", "SIGNOFF_ADDRESS_SESSION_RATE"])
@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "1e308", "1000001"])
def test_bad_address_limits_are_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env={**ENV, name: value})


def test_an_error_in_the_file_names_the_file_and_its_key(tmp_path: Path) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text(f'secret = "{"s" * 32}"\nsession_ttl = "soon"\n')
    with pytest.raises(ConfigError, match=f"^{re.escape(str(config))}: session_ttl: expected"):
        load_settings(config, env={})
    # The environment wins, and its variable is named then.
    with pytest.raises(ConfigError, match=r"^SIGNOFF_SESSION_TTL: expected"):
        load_settings(config, env={"SIGNOFF_SESSION_TTL": "later"})
    config.write_text("secret = 12345678901234567890\n")
    with pytest.raises(ConfigError, match=f"{re.escape(str(config))}: secret: expected a string"):
        load_settings(config, env={})


def test_an_unknown_signoff_variable_is_refused_as_an_unknown_key_is() -> None:
    env = {"SIGNOFF_SECRET": "s" * 32, "SIGNOFF_SESION_TTL": "60"}  # misspelt
    with pytest.raises(
        ConfigError, match=r"unknown environment variables \['SIGNOFF_SESION_TTL'\]"
    ):
        load_settings(env=env)
    known = {"SIGNOFF_SECRET": "s" * 32, "SIGNOFF_PORT": "8000", "SIGNOFF_WORKER_SPEC": "{}"}
    assert load_settings(env=known).secret == "s" * 32


@pytest.mark.parametrize(
    "name", ["SIGNOFF_SESSION_TTL", "SIGNOFF_SESSION_LIFETIME", "SIGNOFF_SWEEP_INTERVAL"]
)
def test_durations_past_a_year_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: at most 31,622,400 seconds"):
        load_settings(env={"SIGNOFF_SECRET": "s" * 32, name: "1e308"})


def test_a_site_sets_what_a_new_conversation_opens_with(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[sites.shop]\norigins = ["https://shop.example"]\naudit_retention_days = 7\n'
        'greeting = "Hi! Ask me about your orders."\nbot_name = "Shopbot"\n'
        'suggestions = ["where is my order?", "cancel an order"]\n'
        'page_actions = ["cancel_order"]\n'
        'bot_avatar = "https://cdn.shop.example/bot%20face.png"\n'
        "team_reasons_to_bot = true\n"
        '[sites.blog]\norigins = ["https://blog.example"]\n',
    )
    sites = load_settings(config, ENV).sites
    assert sites["shop"].welcome() == {
        "greeting": "Hi! Ask me about your orders.",
        "bot_name": "Shopbot",
        "bot_avatar": "https://cdn.shop.example/bot%20face.png",
        "suggestions": ["where is my order?", "cancel an order"],
    }
    assert sites["shop"].audit_retention_days == 7
    assert sites["shop"].page_actions == ("cancel_order",)
    assert (sites["shop"].team_reasons_to_bot, sites["blog"].team_reasons_to_bot) == (True, False)
    assert sites["blog"].welcome() == {}
    assert sites["blog"].page_actions == ()


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ('greeting = ""', r"sites\.shop\.greeting: expected text of 1 to 500"),
        (f'greeting = "{"x" * 501}"', r"sites\.shop\.greeting"),
        ('greeting = "hi\\u0007"', r"sites\.shop\.greeting: control characters"),
        ('bot_name = ["a"]', r"sites\.shop\.bot_name: expected text of 1 to 40"),
        ('suggestions = "list orders"', r"sites\.shop\.suggestions: expected a list of at most 6"),
        ("suggestions = [" + ", ".join(['"a"'] * 7) + "]", r"sites\.shop\.suggestions"),
        (f'suggestions = ["{"y" * 81}"]', r"sites\.shop\.suggestions: expected text of 1 to 80"),
        ('greting = "hi"', r"sites\.shop.*greting"),
        (
            'page_actions = ["cancel order"]',
            r"sites\.shop\.page_actions: expected a list of action",
        ),
        # Nothing a page would run, navigate to or load without TLS from elsewhere.
        (
            'team_reasons_to_bot = "yes"',
            r"sites\.shop\.team_reasons_to_bot: expected true or false",
        ),
        ('bot_avatar = "javascript:alert(1)"', r"sites\.shop\.bot_avatar: expected an https://"),
        ('bot_avatar = "http://cdn.example/a.png"', r"sites\.shop\.bot_avatar: expected"),
        ('bot_avatar = "/static/bot.png"', r"sites\.shop\.bot_avatar: expected"),
        ('bot_avatar = "data:text/html;base64,PGI+"', r"sites\.shop\.bot_avatar: expected"),
        ('bot_avatar = "https://cdn.example/a b.png"', r"bot_avatar: spaces and quotes"),
        ('bot_avatar = "https://cdn.example/a\\"b.png"', r"bot_avatar: spaces and quotes"),
        (f'bot_avatar = "https://cdn.example/{"a" * 2048}.png"', r"at most 2048 characters"),
    ],
)
def test_bad_welcome_settings_are_named(tmp_path: Path, setting: str, named: str) -> None:
    config = write(tmp_path, f'[sites.shop]\norigins = ["https://shop.example"]\n{setting}\n')
    with pytest.raises(ConfigError, match=named):
        load_settings(config, ENV)


@pytest.mark.parametrize(
    "avatar",
    [
        "https://cdn.shop.example/bot.png?v=2",
        "http://localhost:8000/bot.png",  # trying it out on this machine
        "http://127.0.0.1:8000/bot.png",
        "data:image/png;base64,iVBORw0KGgo=",
    ],
)
def test_a_bot_avatar_is_an_image_url(avatar: str) -> None:
    from signoff.config import make_site

    assert make_site("shop", ["https://shop.example"], bot_avatar=avatar).bot_avatar == avatar


def test_a_site_that_is_not_a_table_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sites\.shop"):
        load_settings(write(tmp_path, "[sites]\nshop = 5\n"), ENV)
