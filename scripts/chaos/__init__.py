"""Chaos: faults injected into a running stack under load, then every invariant checked.

__main__.py     `./saga chaos`: the run, on the no-Docker stack or docker compose
faults.py       the fault loop
targets.py      what it hits: the local stack or the compose stack
stream_loss.py  a RabbitMQ 3.10 loss found by chaos, reproduced on its own
"""
