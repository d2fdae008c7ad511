"""The broker link's heartbeat: 10 s unless AMQP_URL asks for its own (shared/broker.py)."""

from yarl import URL

from shared.broker import HEARTBEAT_SECONDS, with_heartbeat


def test_a_url_without_a_heartbeat_gets_ours_and_one_with_its_own_keeps_it() -> None:
    plain = with_heartbeat(URL("amqp://u:p%40ss@host:5672/%2F"))
    assert plain.query["heartbeat"] == str(HEARTBEAT_SECONDS) == "10"
    assert (plain.user, plain.password, plain.path) == ("u", "p@ss", "//")
    own = with_heartbeat(URL("amqp://host/v?heartbeat=30&connection_timeout=5"))
    assert dict(own.query) == {"heartbeat": "30", "connection_timeout": "5"}
