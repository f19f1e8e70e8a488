"""Load: 50 clients (half polling-only, half default) each emit 200 events with acks through the tap.

Every event arrives once at the server, every ack at its client, the trace holds exactly one record per
packet that crossed the tap, and close() leaves nothing behind.
"""
import asyncio
import collections
import time

import siolab
from test_lifecycle import bindable, open_sockets, other_tasks

CLIENTS = 50
EVENTS = 200
# python-engineio refuses a polling body of more than 16 packets (Payload.max_decode_packets) and drops it
# whole, so each client keeps at most this many calls in flight (a burst would be lost, not slowed down).
WINDOW = 8


async def test_fifty_clients_two_hundred_events_each():
    await asyncio.sleep(0)
    tasks_before, sockets_before = len(other_tasks()), open_sockets()
    started = time.perf_counter()
    lab = await siolab.start(ping_interval=5, ping_timeout=5)
    arrived = collections.Counter()

    @lab.server.on("inc")
    async def inc(sid, name, i):
        arrived[(name, i)] += 1
        return i + 1

    names = [f"c{n:02d}" for n in range(CLIENTS)]
    clients = await asyncio.gather(*(
        lab.client(name, transports=["polling"] if n % 2 == 0 else None) for n, name in enumerate(names)))
    connected = time.perf_counter()

    async def run(client, name):
        acks = []
        window = asyncio.Semaphore(WINDOW)

        async def one(i):
            async with window:
                acks.append(await client.call("inc", (name, i), timeout=60))
        await asyncio.gather(*(one(i) for i in range(EVENTS)))
        return sorted(acks)

    try:
        results = await asyncio.gather(*(run(c, name) for c, name in zip(clients, names)))
        exchanged = time.perf_counter()
        transports = {name: c.transport() for name, c in zip(names, clients)}
    finally:
        ports = [lab.tap.port, lab.server_port]
        await lab.close()
    polling = {name for n, name in enumerate(names) if n % 2 == 0}
    closed = time.perf_counter()

    # every event arrived exactly once, every ack came back to its client
    assert len(arrived) == CLIENTS * EVENTS and set(arrived.values()) == {1}
    assert all(acks == list(range(1, EVENTS + 1)) for acks in results)
    assert all(transports[name] == ("polling" if name in polling else "websocket") for name in names)

    # the trace holds exactly one record per event and per ack, per client and direction, none in error
    trace = lab.trace
    assert trace.dropped == 0
    assert not [r for r in trace if r.error], [str(r) for r in trace if r.error][:5]
    events, acks = collections.Counter(), collections.Counter()
    sent_args, sent_ids, ack_ids = (collections.defaultdict(list) for _ in range(3))
    transports_seen = collections.defaultdict(set)
    post_bodies, post_replies = collections.Counter(), collections.Counter()
    for r in trace:  # one pass: 20 000+ records
        if r.kind == "packet" and r.event == "inc":
            events[(r.client, r.dir)] += 1
            sent_args[r.client].append(r.args[1])
            sent_ids[r.client].append(r.ack)
            transports_seen[r.client].add(r.transport)
        elif r.kind == "packet" and r.sio == "ack":
            acks[(r.client, r.dir)] += 1
            ack_ids[r.client].append(r.ack)
        if r.client in polling and r.http and r.http["method"] == "POST":
            if r.kind == "packet" and r.dir == "c2s":
                post_bodies[(r.client, r.t)] += 1
            elif r.kind == "http" and r.dir == "s2c":
                post_replies[r.client] += 1
    assert events == {(name, "c2s"): EVENTS for name in names}
    assert acks == {(name, "s2c"): EVENTS for name in names}
    for name in names:
        assert sorted(sent_args[name]) == list(range(EVENTS))
        assert transports_seen[name] == {"polling" if name in polling else "websocket"}
        assert len(set(sent_ids[name])) == EVENTS and sorted(sent_ids[name]) == sorted(ack_ids[name])
    # each POST is one body of packet records (they share its time) and one record for its answer
    for name in polling:
        assert post_replies[name] == sum(1 for (client, _) in post_bodies if client == name)

    # nothing left behind
    await asyncio.sleep(0.1)
    assert not siolab.open_labs()
    assert len(other_tasks()) == tasks_before, other_tasks()
    assert open_sockets() <= sockets_before
    assert all(bindable(p) for p in ports)
    print(f"\n{CLIENTS} clients x {EVENTS} events: connect {connected - started:.2f} s, "
          f"exchange {exchanged - connected:.2f} s, close {closed - exchanged:.2f} s, "
          f"{len(trace)} records, {sum(events.values()) + sum(acks.values())} event/ack packets")
