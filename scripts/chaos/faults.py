"""The fault loop: pick a component, kill it and start it again, or freeze it and thaw it; or
pick a link from a process to its database or the broker and cut it for a while.

A round is every kind of fault once: a service killed and one frozen, a relay killed and one
frozen, the broker killed, a database crashed (SIGKILL, then started again: crash recovery), a
memory and a disk alarm raised on the broker and cleared (scripts/chaos/alarms.py), and each
fault the target can put on a link (scripts/chaos/targets.py): reset (RST mid-transaction
or mid-publish), black-holed, slowed. On a RabbitMQ cluster, the broker is never killed whole:
one node at a time is killed, frozen or partitioned away instead (a NODE fault), half of the
time the one leading the most queues. The first `rounds` rounds always run whole, in an order
drawn from the seed, so a run hits every kind (at least `rounds` times each) however short it
is; after them, until the time is up, each fault is drawn from the seed. `kinds` narrows both
to some kinds of component.
"""

import logging
import random
import threading
import time
from dataclasses import dataclass, field

from scripts.chaos import alarms
from scripts.chaos.targets import ALARM, BROKER, DATABASE, LINK, NODE, Target
from shared.system import is_relay, is_service

logger = logging.getLogger("chaos")

KINDS = ("service", "relay", BROKER, DATABASE, LINK, ALARM, NODE)
# What a run hits unless told: every kind the target has (one broker, or a cluster's nodes).
ONE_BROKER_KINDS = tuple(kind for kind in KINDS if kind != NODE)
CLUSTER_KINDS = tuple(kind for kind in KINDS if kind != BROKER)
NODE_ACTIONS = ("kill", "freeze", "partition")
# How often each kind is drawn after the planned rounds: the broker and a database take seconds
# to come back.
WEIGHTS = {"service": 9, "relay": 9, BROKER: 2, DATABASE: 2, LINK: 6, ALARM: 2, NODE: 4}
# Every fault of a process once, as (kind of component, action); the links' come from the target.
PROCESS_ROUND = (
    ("service", "kill"),
    ("service", "freeze"),
    ("relay", "kill"),
    ("relay", "freeze"),
    (BROKER, "kill"),
    (DATABASE, "kill"),
    *((ALARM, kind) for kind in alarms.KINDS),
    *((NODE, action) for action in NODE_ACTIONS),
)


@dataclass
class Fault:
    at: float
    kind: str  # one of KINDS
    target: str  # a process, a database, BROKER, a node (`rabbitmq-2`) or a link (`order→postgres`)
    action: str  # "kill", "freeze", "partition", a link action (the target's), an alarm's kind
    pause: float
    error: str = ""  # why the fault could not be injected, if it could not


@dataclass
class Chaos:
    target: Target
    rng: random.Random
    seconds: float
    pause_range: tuple[float, float] = (0.2, 1.5)
    gap_range: tuple[float, float] = (0.1, 0.5)
    rounds: int = 1
    kinds: tuple[str, ...] = ONE_BROKER_KINDS
    # A black hole lasts longer: long enough, now and then, for a request to meet its bound.
    hole_range: tuple[float, float] = (1.0, 4.0)
    # A node's fault too: long enough for its queues to elect new leaders elsewhere.
    node_range: tuple[float, float] = (1.5, 5.0)
    faults: list[Fault] = field(default_factory=list)
    # Set when the load is done: no more drawn faults (the planned rounds still run whole).
    stop: threading.Event = field(default_factory=threading.Event)
    # Set when a person stops the run: not one more fault.
    halt: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Inject faults until the time is up (in a thread, beside the load)."""
        started = time.monotonic()
        planned = [fault for _ in range(self.rounds) for fault in self.one_round()]
        self.rng.shuffle(planned)

        def more() -> bool:
            if self.halt.is_set():
                return False
            return bool(planned) or (
                time.monotonic() - started < self.seconds and not self.stop.is_set()
            )

        while more():
            time.sleep(self.rng.uniform(*self.gap_range))
            kind, action = planned.pop() if planned else self._draw()
            pause = self.rng.uniform(*self._pauses(kind, action))
            fault = Fault(time.monotonic() - started, kind, "", action, pause)
            self.faults.append(fault)
            try:
                fault.target = self._pick(kind)
                self.inject(fault)
            except Exception as exc:  # a fault the target refused: said, and the run goes on
                fault.error = str(exc)
                logger.error("%s of %s failed: %s", action, fault.target or kind, exc)

    def one_round(self) -> list[tuple[str, str]]:
        """Every kind of fault once, as (kind of component, action)."""
        links = [(LINK, action) for action in self.target.link_actions]
        return [fault for fault in (*PROCESS_ROUND, *links) if fault[0] in self.kinds]

    def _pauses(self, kind: str, action: str) -> tuple[float, float]:
        if kind == NODE:
            return self.node_range
        return self.hole_range if action == "black hole" else self.pause_range

    def _pick(self, kind: str) -> str:
        if kind in (BROKER, ALARM):
            return BROKER
        if kind == NODE:
            leader = self.rng.random() < 0.5
            return self.target.leader() if leader else self.rng.choice(self.target.nodes())
        if kind == DATABASE:
            return self.rng.choice(self.target.databases())
        if kind == LINK:
            return self.rng.choice(self.target.links())
        hit = is_relay if kind == "relay" else is_service
        return self.rng.choice([n for n in self.target.processes() if hit(n)])

    def _draw(self) -> tuple[str, str]:
        kind = self.rng.choices(self.kinds, weights=[WEIGHTS[k] for k in self.kinds])[0]
        if kind == LINK:
            return kind, self.rng.choice(self.target.link_actions)
        if kind == ALARM:
            return kind, self.rng.choice(alarms.KINDS)
        if kind == NODE:
            return kind, self.rng.choice(NODE_ACTIONS)
        action = "kill" if kind in (BROKER, DATABASE) or self.rng.random() < 0.7 else "freeze"
        return kind, action

    def inject(self, fault: Fault) -> None:
        if fault.kind == LINK:
            self.target.disturb(fault.target, fault.action)
            time.sleep(fault.pause)
            self.target.mend(fault.target)
        elif fault.kind == ALARM:
            self.target.alarm(fault.action, True)
            time.sleep(fault.pause)
            self.target.alarm(fault.action, False)
        elif fault.action == "partition":
            self.target.partition(fault.target)
            time.sleep(fault.pause)
            self.target.reconnect(fault.target)
        elif fault.action == "kill":
            self.target.kill(fault.target)
            time.sleep(fault.pause)
            self.target.start(fault.target)
        else:
            self.target.freeze(fault.target)
            time.sleep(fault.pause)
            self.target.thaw(fault.target)
