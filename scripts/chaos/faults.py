"""The fault loop: pick a component, kill it and start it again, or freeze it and thaw it.

A round is every kind of fault once: a service killed and one frozen, a relay killed and one
frozen, the broker killed. The first `rounds` rounds always run whole, in an order drawn from
the seed, so a run hits every kind (at least `rounds` times each) however short it is; after
them, until the time is up, each fault is drawn from the seed.
"""

import logging
import random
import threading
import time
from dataclasses import dataclass, field

from scripts.chaos.targets import BROKER, Target
from shared.system import is_relay, is_service

logger = logging.getLogger("chaos")

KINDS = ("service", "relay", BROKER)
# Every kind of fault once, as (kind of component, action).
ROUND = (
    ("service", "kill"),
    ("service", "freeze"),
    ("relay", "kill"),
    ("relay", "freeze"),
    (BROKER, "kill"),
)


@dataclass
class Fault:
    at: float
    target: str
    action: str  # "kill" or "freeze"
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
    faults: list[Fault] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Inject faults until the time is up (in a thread, beside the load)."""
        started = time.monotonic()
        planned = [fault for _ in range(self.rounds) for fault in ROUND]
        self.rng.shuffle(planned)
        while planned or (time.monotonic() - started < self.seconds and not self.stop.is_set()):
            time.sleep(self.rng.uniform(*self.gap_range))
            kind, action = planned.pop() if planned else self._draw()
            if kind == BROKER:
                target = BROKER
            else:
                hit = is_relay if kind == "relay" else is_service
                names = [n for n in self.target.processes() if hit(n)]
                target = self.rng.choice(names)
            pause = self.rng.uniform(*self.pause_range)
            fault = Fault(time.monotonic() - started, target, action, pause)
            self.faults.append(fault)
            try:
                self.inject(target, action, pause)
            except Exception as exc:  # a fault the target refused: said, and the run goes on
                fault.error = str(exc)
                logger.error("%s of %s failed: %s", action, target, exc)

    def _draw(self) -> tuple[str, str]:
        # The broker takes seconds to come back: it gets one fault in ten.
        kind = self.rng.choices(KINDS, weights=(9, 9, 2))[0]
        action = "kill" if kind == BROKER or self.rng.random() < 0.7 else "freeze"
        return kind, action

    def inject(self, target: str, action: str, pause: float) -> None:
        if action == "kill":
            self.target.kill(target)
            time.sleep(pause)
            self.target.start(target)
        else:
            self.target.freeze(target)
            time.sleep(pause)
            self.target.thaw(target)
