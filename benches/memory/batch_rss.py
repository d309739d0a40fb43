#!/usr/bin/env python3
"""What one hostile batch costs the bridge in memory, and whether it comes back.

Starts `mcp-bridge serve` (the embedded default: the demo server) on a free loopback port,
opens a session, then sends one 4 MiB JSON-RPC batch of 82,000 pings, then four at once,
sampling the bridge's RSS from /proc every 20 ms. A bridge that bounds batches refuses
them at once; one that does not answers them all. Then it sends the most a bounded bridge
allows (batches of `--allowed` pings, from `--clients` clients for `--seconds`) to show
what legitimate load leaves behind. Prints one JSON object.

    python3 benches/memory/batch_rss.py --bridge target/release/mcp-bridge
"""

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(port, body, session=None, timeout=120):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
    }
    if session:
        headers["mcp-session-id"] = session
    connection.request("POST", "/mcp/demo", body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    result = (response.status, response.getheader("mcp-session-id"), len(data))
    connection.close()
    return result


class Sampler:
    """Samples RSS in a thread; `peak` is the highest value seen since the last reset."""

    def __init__(self, pid):
        self.pid, self.peak, self.running = pid, 0, True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def reset(self):
        self.peak = rss_kib(self.pid)


def settled(pid, seconds=3.0):
    time.sleep(seconds)
    return rss_kib(pid)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--allowed", type=int, default=100, help="pings per legitimate batch")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    port = free_port()
    bridge = subprocess.Popen(
        [args.bridge, "serve", "--listen", f"127.0.0.1:{port}", "--log-level", "warn"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("the bridge never became ready")
            time.sleep(0.1)
        init = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-03-26", "capabilities": {},
            "clientInfo": {"name": "batch-rss", "version": "1"}}})
        _, session, _ = post(port, init)
        huge = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(82_000)])
        sampler = Sampler(bridge.pid)
        report = {"bridge": args.bridge, "batch_bytes": len(huge)}

        report["idle_kib"] = settled(bridge.pid, 1.0)
        sampler.reset()
        status, _, size = post(port, huge, session)
        report["one_huge"] = {"status": status, "answer_bytes": size, "peak_kib": sampler.peak,
                              "after_kib": settled(bridge.pid)}

        sampler.reset()
        threads = [threading.Thread(target=post, args=(port, huge, session)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report["four_huge"] = {"peak_kib": sampler.peak, "after_kib": settled(bridge.pid)}

        allowed = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(args.allowed)])
        sent = [0]
        stop = time.time() + args.seconds

        def client():
            while time.time() < stop:
                post(port, allowed, session)
                sent[0] += 1

        sampler.reset()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        report["allowed_load"] = {"batches": sent[0], "pings_per_batch": args.allowed,
                                  "peak_kib": sampler.peak, "after_kib": settled(bridge.pid)}
        sampler.running = False
        print(json.dumps(report))
    finally:
        bridge.send_signal(signal.SIGKILL)
        bridge.wait()


if __name__ == "__main__":
    main()
