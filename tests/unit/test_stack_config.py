"""The settings that name a stack round-trip: what `to_env` says, `from_env` reads back, so a
tool run with a test stack's environment reaches that stack and no other."""

from pathlib import Path

import pytest

from scripts.stack import StackConfig


def test_a_stack_named_by_its_environment_is_found_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = StackConfig.isolated("sagaunit", tmp_path)
    for variable, value in named.to_env().items():
        monkeypatch.setenv(variable, value)

    found = StackConfig.from_env()

    assert found.ports == named.ports
    assert (found.database_prefix, found.vhost, found.var_dir) == (
        named.database_prefix,
        named.vhost,
        named.var_dir,
    )
    assert found.base_urls() == named.base_urls()
