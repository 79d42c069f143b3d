"""The error hierarchy: every exception abcore raises for its user is an AbcoreError of the right kind,
the HTTP API maps the kinds to 404/409/422/503 in one table and the CLI maps them to exit code 1."""

from __future__ import annotations

import pytest

from abcore.access.api_keys import ApiKeyError
from abcore.access.users import AuthConfigError
from abcore.api.errors import STATUS_BY_ERROR, abcore_error_response, status_of
from abcore.assign.reads import Unavailable as ReadsUnavailable
from abcore.cli.common import CliError
from abcore.errors import AbcoreError, Conflict, Invalid, NotFound, Unavailable
from abcore.experiments.errors import ApprovalRequired, ExperimentError, ExperimentNotFound, InvalidTransition
from abcore.experiments.ml_models import ModelError
from abcore.io.configs import ConfigError
from abcore.io.csv_export import ExportError
from abcore.io.event_import import ImportError_
from abcore.metrics import MetricNotFound

KINDS = [
    (ExperimentNotFound, NotFound, 404),
    (MetricNotFound, NotFound, 404),
    (InvalidTransition, Conflict, 409),
    (ApprovalRequired, Conflict, 409),
    (ExperimentError, Invalid, 422),
    (ExportError, Invalid, 422),
    (ConfigError, Invalid, 422),
    (ApiKeyError, Invalid, 422),
    (ModelError, Invalid, 422),
    (AuthConfigError, Invalid, 422),
    (ImportError_, Invalid, 422),
    (CliError, Invalid, 422),
    (ReadsUnavailable, Unavailable, 503),
]


@pytest.mark.parametrize(("cls", "kind", "status"), KINDS, ids=[k[0].__name__ for k in KINDS])
def test_each_error_has_its_kind_and_status(cls: type[AbcoreError], kind: type[AbcoreError], status: int) -> None:
    assert issubclass(cls, kind)
    assert status_of(cls("boom")) == status


@pytest.mark.parametrize("cls", [ExperimentError, ExportError, AuthConfigError, ImportError_])
def test_errors_that_were_value_errors_still_are(cls: type[Exception]) -> None:
    assert issubclass(cls, ValueError)  # callers catching ValueError keep working


def test_metric_not_found_is_still_a_lookup_error() -> None:
    assert issubclass(MetricNotFound, LookupError)


def test_the_table_covers_every_kind_most_specific_first() -> None:
    assert [kind for kind, _ in STATUS_BY_ERROR] == [NotFound, Conflict, Unavailable, Invalid]


def test_api_body_lists_every_problem_and_asks_to_retry_on_503() -> None:
    invalid = abcore_error_response(ExperimentError("two problems", ["a", "b"]))
    assert invalid.status_code == 422 and invalid.body == b'{"detail":"two problems","problems":["a","b"]}'
    export = abcore_error_response(ExportError("bad weights"))
    assert export.body == b'{"detail":"bad weights","problems":["bad weights"]}'
    missing = abcore_error_response(ExperimentNotFound("no such experiment"))
    assert missing.status_code == 404 and missing.body == b'{"detail":"no such experiment","problems":[]}'
    down = abcore_error_response(ReadsUnavailable("store too slow"))
    assert down.status_code == 503 and down.headers["retry-after"] == "1"


def test_cli_maps_any_abcore_error_to_one_line_and_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from abcore.cli import store
    from abcore.cli.main import main

    def fail(_args: object) -> int:
        raise ReadsUnavailable("the store did not answer\nsecond line")

    monkeypatch.setattr(store, "cmd_init", fail)
    assert main(["--database-url", "sqlite://", "init"]) == 1
    assert capsys.readouterr().err == "error: the store did not answer\n"
