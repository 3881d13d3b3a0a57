#!/usr/bin/env python3
"""Several producer processes send checksum messages and verify every result.

Start a broker with a checksum queue, then run this:

    gpuqd -s /tmp/gpuq.sock -q jobs,handler=checksum,slot_bytes=1024 &
    python3 producer.py --socket /tmp/gpuq.sock --queue jobs --procs 4

Or let it start a private broker for the run:

    python3 producer.py --gpuqd /path/to/broker/gpuqd --procs 4

Each process connects on its own (a client must not cross fork()), keeps a
window of messages in flight with enqueue_batch(timeout=0) and poll(), and
checks each 4-byte result against a CRC32C computed here.  The code is the
same whatever backend (cpu or cuda) the broker runs the queue on.
"""

import argparse
import multiprocessing
import os
import queue as queue_mod
import random
import shutil
import subprocess
import sys
import tempfile
import time

import gpuq
from gpuq.schema import checksum_result, crc32c


def payload(proc, seq, size):
    rnd = random.Random(proc * 1_000_003 + seq)
    head = b"p%d m%d " % (proc, seq)
    return (head + rnd.randbytes(size) if hasattr(rnd, "randbytes")
            else head + bytes(rnd.getrandbits(8) for _ in range(size)))[:size]


def produce(proc, socket, queue, messages, size, batch, out):
    """One producer process: returns (sent, verified, failed, seconds)."""
    bad = 0
    with gpuq.connect(socket) as client, client.open(queue) as q:
        info = q.info()
        if info.handler != "checksum":
            raise SystemExit("queue %s runs %s, not checksum"
                             % (queue, info.handler))
        size = min(size, info.slot_bytes)
        window = min(info.cq_capacity, 4 * batch, info.capacity)
        expect = {}  # id -> crc32c
        sent = done = 0
        t0 = time.monotonic()
        while done < messages:
            room = window - q.inflight
            n = min(batch, messages - sent, room)
            if n > 0:
                msgs = [payload(proc, sent + i, size) for i in range(n)]
                try:
                    ids = q.enqueue_batch(msgs, timeout=0)
                except (gpuq.Full, gpuq.CompletionsFull):
                    ids = []
                for mid, m in zip(ids, msgs):
                    expect[mid] = crc32c(m)
                sent += len(ids)
            for c in q.poll(max=256, timeout=0.01 if n <= 0 else 0):
                want = expect.pop(c.id)
                if not c.ok or checksum_result(c.data) != want:
                    bad += 1
                done += 1
        secs = time.monotonic() - t0
    out.put((proc, sent, done - bad, bad, secs))


def start_broker(gpuqd):
    d = tempfile.mkdtemp(prefix="gpuq-example-")
    sock = os.path.join(d, "gpuqd.sock")
    log = open(os.path.join(d, "gpuqd.log"), "ab")
    p = subprocess.Popen([gpuqd, "-s", sock, "-q",
                          "jobs,handler=checksum,slot_bytes=1024,workers=2"],
                         stdout=log, stderr=log)
    for _ in range(500):
        try:
            gpuq.connect(sock).close()
            return p, d, sock
        except (gpuq.NoBroker, gpuq.BrokerDead):
            if p.poll() is not None:
                break
            time.sleep(0.01)
    p.kill()
    raise SystemExit("gpuqd did not start; see %s/gpuqd.log" % d)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--socket", help="broker socket (default: $GPUQ_SOCKET "
                    "or the library's default)")
    ap.add_argument("--gpuqd", help="start a private gpuqd (this binary) "
                    "with a queue 'jobs' and use it")
    ap.add_argument("--queue", default="jobs")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--messages", type=int, default=2000,
                    help="per process")
    ap.add_argument("--size", type=int, default=256, help="payload bytes")
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()

    broker = None
    if a.gpuqd:
        broker, bdir, a.socket = start_broker(a.gpuqd)
        a.queue = "jobs"
    try:
        out = multiprocessing.Queue()
        ps = [multiprocessing.Process(
            target=produce, args=(i, a.socket, a.queue, a.messages, a.size,
                                  a.batch, out)) for i in range(a.procs)]
        for p in ps:
            p.start()
        results = []
        while len(results) < len(ps):
            try:
                results.append(out.get(timeout=0.5))
            except queue_mod.Empty:
                if not any(p.is_alive() for p in ps) and out.empty():
                    break  # a producer died without reporting
        for p in ps:
            p.join()
        ok = bad = 0
        for proc, sent, good, failed, secs in sorted(results):
            print("producer %d: %d sent, %d verified, %d bad, %.0f msg/s"
                  % (proc, sent, good, failed, sent / secs if secs else 0))
            ok += good
            bad += failed
        with gpuq.connect(a.socket) as c, c.open(a.queue) as q:
            s = q.stats()
            print("queue %s (%s backend): enqueued %d completed %d "
                  "dead-lettered %d" % (a.queue, q.info().backend, s.enqueued,
                                        s.completed, s.dead_lettered))
        print("%d messages verified, %d bad" % (ok, bad))
        failed_procs = [p.exitcode for p in ps if p.exitcode]
        if failed_procs:
            print("producer exit codes: %s" % failed_procs)
        return 1 if bad or failed_procs or ok != a.procs * a.messages else 0
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
            shutil.rmtree(bdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
