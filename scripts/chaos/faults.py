"""The fault loop: pick a component, kill it and start it again, or freeze it and thaw it.

The first round, one fault of each kind of component, always runs whole, so a run hits every
kind however short; the rest are drawn from the seed.
"""

import random
import threading
import time
from dataclasses import dataclass, field

from scripts.chaos.targets import BROKER, Target
from shared.system import is_relay

KINDS = ("service", "relay", BROKER)


@dataclass
class Fault:
    at: float
    target: str
    action: str  # "kill" or "freeze"
    pause: float


@dataclass
class Chaos:
    target: Target
    rng: random.Random
    seconds: float
    pause_range: tuple[float, float] = (0.2, 1.5)
    gap_range: tuple[float, float] = (0.1, 0.5)
    faults: list[Fault] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Inject faults until the time is up (in a thread, beside the load)."""
        started = time.monotonic()
        kinds = list(KINDS)
        self.rng.shuffle(kinds)
        while kinds or (time.monotonic() - started < self.seconds and not self.stop.is_set()):
            time.sleep(self.rng.uniform(*self.gap_range))
            # The broker takes seconds to come back: it gets one fault in ten.
            kind = kinds.pop() if kinds else self.rng.choices(KINDS, weights=(9, 9, 2))[0]
            if kind == BROKER:
                target = BROKER
            else:
                names = [n for n in self.target.processes() if is_relay(n) == (kind == "relay")]
                target = self.rng.choice(names)
            action = "kill" if target == BROKER or self.rng.random() < 0.7 else "freeze"
            pause = self.rng.uniform(*self.pause_range)
            self.faults.append(Fault(time.monotonic() - started, target, action, pause))
            self.inject(target, action, pause)

    def inject(self, target: str, action: str, pause: float) -> None:
        if action == "kill":
            self.target.kill(target)
            time.sleep(pause)
            self.target.start(target)
        else:
            self.target.freeze(target)
            time.sleep(pause)
            self.target.thaw(target)
