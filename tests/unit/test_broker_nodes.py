"""AMQP_URL naming a cluster's nodes, as libpq names several hosts (shared/broker.py), and the
stack's settings that write such URLs (scripts/stack/config.py)."""

from pathlib import Path

from scripts.stack import StackConfig
from shared.broker import address, node_urls


def test_one_node_is_its_own_url() -> None:
    url = "amqp://order:s%40cret@rabbitmq:5672/%2F?heartbeat=5"
    assert node_urls(url) == [url]


def test_several_nodes_share_the_credentials_the_vhost_and_the_options() -> None:
    url = "amqp://order:s%40cret@rabbit-1:5672, rabbit-2:5673,rabbit-3/saga?heartbeat=5"
    assert node_urls(url) == [
        "amqp://order:s%40cret@rabbit-1:5672/saga?heartbeat=5",
        "amqp://order:s%40cret@rabbit-2:5673/saga?heartbeat=5",
        "amqp://order:s%40cret@rabbit-3/saga?heartbeat=5",
    ]
    assert [address(node) for node in node_urls(url)] == [
        "rabbit-1:5672",
        "rabbit-2:5673",
        "rabbit-3",
    ]


def test_a_url_without_credentials_or_nodes_is_left_to_the_client_to_refuse() -> None:
    assert node_urls("amqp://h1,h2/") == ["amqp://h1/", "amqp://h2/"]
    assert node_urls("amqp:///") == ["amqp:///"]


def test_a_cluster_stack_names_every_node_and_reads_them_back(tmp_path: Path) -> None:
    config = StackConfig.isolated(
        "sagaunit", tmp_path, amqp_port=7001, amqp_ports=[7001, 7002, 7003]
    )
    url = config.amqp_url_of("payment")
    assert [address(node) for node in node_urls(url)] == [
        "127.0.0.1:7001",
        "127.0.0.1:7002",
        "127.0.0.1:7003",
    ]
    through = config.amqp_url_of("payment", [9001, 9002, 9003])
    assert [address(node) for node in node_urls(through)] == [
        "127.0.0.1:9001",
        "127.0.0.1:9002",
        "127.0.0.1:9003",
    ]

    read = StackConfig().with_amqp_url(config.amqp_url)
    assert (read.amqp_port, read.amqp_ports, read.vhost) == (7001, [7001, 7002, 7003], config.vhost)
    assert StackConfig().with_amqp_url("amqp://guest:guest@127.0.0.1:7001/").amqp_ports == []
