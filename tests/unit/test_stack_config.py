"""The settings that name a stack round-trip: what `to_env` says, `from_env` reads back, so a
tool run with a test stack's environment reaches that stack and no other."""

from pathlib import Path

import pytest

from scripts.stack import StackConfig
from scripts.stack.instances import free_port


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


def test_free_ports_are_never_given_out_twice() -> None:
    # The kernel picks port 0's port at random: in a thousand binds here it gave some port
    # twice about forty times, and a stack's process and a fault proxy's link then met on one.
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
