"""The user-facing tools, by audience. Runtime code (shared/, services/, relay/) never imports
anything from here.

    stack/   the harness: the no-Docker stack, own PostgreSQL and RabbitMQ instances, docker
             compose; what `./saga up`, the tools and the tests run the system with
    ops/     for an operator of a running stack: check (the invariants), dlq, walkthrough
    perf/    for measuring it: load, bench, profile
    chaos/   for breaking it: faults under load, then the check
"""
