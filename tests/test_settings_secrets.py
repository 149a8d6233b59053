"""Secrets in the settings never reach an error or a log: every entry point started with
broken settings that contain secrets names the bad variables, one line each, without a value."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from learning_platform.core.errors import UsageError
from learning_platform.core.settings import Settings, get_settings
from tests.command_runs import run_at_once

SECRETS = {
    "S3_SECRET_ACCESS_KEY": "s3-secret-9d2e",
    "OPENAI_API_KEY": "sk-openai-secret-41aa",
    "JWT_SECRET": "jwt-secret-0c77-long-enough-for-hs256",
    "JWT_PREVIOUS_SECRET": "jwt-previous-secret-5b19",
    "TEMPORAL_API_KEY": "temporal-api-key-e3f0",
}
DB_PASSWORD = "db-password-8e6b"
# The probe: a check across settings printed every input value, S3 key included.
CROSS_CHECK = {
    **SECRETS,
    "DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@127.0.0.1:5/app",
    "STORAGE_BACKEND": "s3",
}
# Field errors, one of them in the secret URL itself.
FIELD_ERRORS = {
    **SECRETS,
    "DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@127.0.0.1:not-a-port/app",
    "METRICS_PORT": SECRETS["S3_SECRET_ACCESS_KEY"],  # a secret pasted into the wrong variable
}
EXPECTED_LINES = {
    "cross": ["error: STORAGE_BACKEND=s3 needs S3_BUCKET"],
    "fields": [
        "error: DATABASE_URL is not a URL like postgresql://USER:PASSWORD@HOST:5432/DATABASE "
        "(percent-encode special characters in the password)",
        "error: METRICS_PORT: Input should be a valid integer, "
        "unable to parse string as an integer",
    ],
}
ENTRY_POINTS = {
    "worker": ["worker.py"],
    "schedules": ["schedules.py", "list"],
    "outbox": ["-m", "learning_platform", "outbox", "dead-letters", "list"],
    "sessions": ["-m", "learning_platform", "sessions", "process", "1"],
    "migrations": ["-m", "learning_platform", "migrate"],
    "dev": ["-m", "learning_platform", "dev"],
    "api": ["-m", "learning_platform", "api"],
}
ALL_SECRETS = [*SECRETS.values(), DB_PASSWORD]


def clean_environment(**settings: str) -> dict[str, str]:
    """This environment without any setting of ours, plus `settings`."""
    names = {name.upper() for name in Settings.model_fields} | set(SECRETS)
    return {**{k: v for k, v in os.environ.items() if k not in names}, **settings}


@pytest.mark.parametrize("case", ["cross", "fields"])
def test_every_entry_point_names_the_bad_settings_and_no_secret(case: str) -> None:
    env = clean_environment(**(CROSS_CHECK if case == "cross" else FIELD_ERRORS))
    results = run_at_once({name: (argv, env) for name, argv in ENTRY_POINTS.items()})
    debug = run_at_once({"debug": ([*ENTRY_POINTS["schedules"], "--debug"], env)})["debug"]

    for name, result in {**results, "schedules --debug": debug}.items():
        assert not [s for s in ALL_SECRETS if s in result.output], (name, result.output)
        assert result.returncode == 2, (name, result.returncode, result.stderr)
    lines = {name: r.error_lines for name, r in results.items()}
    assert lines == dict.fromkeys(lines, EXPECTED_LINES[case])
    assert (
        "Traceback" in debug.stderr
        and debug.error_lines[-len(EXPECTED_LINES[case]) :] == (EXPECTED_LINES[case])
    )


def test_validation_errors_and_reprs_hold_no_secret_values() -> None:
    values = {
        name.lower(): value for name, value in CROSS_CHECK.items() if name != "TEMPORAL_API_KEY"
    }

    with pytest.raises(ValidationError) as cross:
        Settings(**values)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as field:
        Settings(
            **{**values, "storage_backend": "local", "database_url": FIELD_ERRORS["DATABASE_URL"]}
        )  # type: ignore[arg-type]
    loaded = Settings(**{**values, "storage_backend": "local"})  # type: ignore[arg-type]

    for shown in (str(cross.value), str(field.value), repr(loaded), str(loaded.model_dump())):
        assert not [s for s in ALL_SECRETS if s in shown], shown
    assert loaded.database_url is not None
    assert DB_PASSWORD in loaded.database_url.get_secret_value()


def test_get_settings_says_which_variables_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**FIELD_ERRORS, "CRAWLER_ALLOWED_HOSTS": "[not json"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(UsageError) as raised:
            get_settings()
        monkeypatch.setenv("CRAWLER_ALLOWED_HOSTS", '["ok.example"]')
        with pytest.raises(UsageError) as fields:
            get_settings()
    finally:
        get_settings.cache_clear()

    assert str(raised.value) == "CRAWLER_ALLOWED_HOSTS: not valid JSON; a list is written " + (
        '["a.example", "b.example"]'
    )
    assert raised.value.exit_code == 2
    assert str(fields.value).splitlines() == [
        line.removeprefix("error: ") for line in EXPECTED_LINES["fields"]
    ]
