"""Broker resource alarms, raised and cleared with rabbitmqctl on a node of a test's or a chaos
run's own: a memory alarm (the high watermark set below what the node uses) or a disk alarm
(the free-disk limit set above what the disk has). While either is in effect, RabbitMQ blocks
every connection that publishes: it stops reading from it.
"""

import subprocess

KINDS = ("memory", "disk")
RAISE = {
    "memory": ["set_vm_memory_high_watermark", "0.00001"],
    "disk": ["set_disk_free_limit", "1000000GB"],
}
# RabbitMQ's defaults (3.10; 4.0 raised the watermark to 0.6, and 0.4 is no alarm there either).
CLEAR = {
    "memory": ["set_vm_memory_high_watermark", "0.4"],
    "disk": ["set_disk_free_limit", "50MB"],
}


def raise_alarm(rabbitmqctl: list[str], kind: str) -> None:
    _run([*rabbitmqctl, *RAISE[kind]])


def clear_alarm(rabbitmqctl: list[str], kind: str) -> None:
    _run([*rabbitmqctl, *CLEAR[kind]])


def alarms_in_effect(rabbitmqctl: list[str]) -> bool:
    """Whether the node has an alarm on (`rabbitmq-diagnostics check_local_alarms` fails)."""
    diagnostics = [part.replace("rabbitmqctl", "rabbitmq-diagnostics") for part in rabbitmqctl]
    done = subprocess.run(
        [*diagnostics, "-q", "check_local_alarms"], capture_output=True, text=True, timeout=60
    )
    return done.returncode != 0


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[-3:])} failed: {done.stderr.strip()}")
