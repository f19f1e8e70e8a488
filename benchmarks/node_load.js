#!/usr/bin/env node
"use strict";
// The scale benchmark's load: N official `socket.io-client` clients (pinned in tests/node) in this one
// process, each calling "echo" with an ack back to back.
//
//   node benchmarks/node_load.js URL --clients N --seconds S [--warmup S] [--transport websocket|polling]
//
// Connects every client (on that one transport), lets them call for --warmup seconds, then counts for
// --seconds: round trips that began and ended in that window, and their latencies. Then no new call
// starts; the calls still out are waited for (every call sent gets its ack, or is counted as unanswered),
// and one JSON line is printed (after a line {"phase": "start"} when the counted window opens and
// {"phase": "end"} when it closes, for a parent that measures other processes over the same window):
//   {"clients", "transport", "seconds", "calls", "rate", "p50_ms", "p90_ms", "p99_ms", "max_ms",
//    "sent", "acked", "unanswered", "errors", "cpu_s"}
// "sent"/"acked" count every call of the run, warm-up included (what the tap's trace must hold);
// "cpu_s" is this process's CPU time (user + system) in the counted window.

const path = require("path");

const MODULES = path.join(__dirname, "..", "tests", "node", "node_modules");
const { io } = require(path.join(MODULES, "socket.io-client"));

function parseArgs(argv) {
  const out = { url: null, clients: 1, seconds: 2, warmup: 0.3, transport: "websocket" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) { out.url = arg; continue; }
    const key = arg.slice(2);
    const value = argv[++i];
    if (value === undefined) throw new Error(`missing value for ${arg}`);
    if (key === "clients") out.clients = parseInt(value, 10);
    else if (key === "seconds") out.seconds = parseFloat(value);
    else if (key === "warmup") out.warmup = parseFloat(value);
    else if (key === "transport") out.transport = value;
    else throw new Error(`unknown option ${arg}`);
  }
  if (!out.url) throw new Error("no URL");
  return out;
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function fail(message) {
  process.stdout.write(JSON.stringify({ error: message }) + "\n", () => process.exit(1));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const overall = setTimeout(() => fail("timed out"), (opts.warmup + opts.seconds + 60) * 1000);
  const sockets = [];
  await Promise.all(Array.from({ length: opts.clients }, () => new Promise((resolve, reject) => {
    const socket = io(opts.url, { transports: [opts.transport], reconnection: false, forceNew: true,
                                  timeout: 20000 });
    sockets.push(socket);
    socket.once("connect", resolve);
    socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
  })));

  const now = () => Number(process.hrtime.bigint()) / 1e6; // ms
  const latencies = [];
  let sent = 0, acked = 0, errors = 0, stopping = false, counting = false;
  let windowStart = 0, windowEnd = Infinity;
  let outstanding = 0;
  let drained = null;

  const call = (socket) => {
    if (stopping || !socket.connected) return;
    const t = now();
    sent++;
    outstanding++;
    socket.emit("echo", "x", (reply) => {
      const done = now();
      acked++;
      outstanding--;
      if (reply !== "x") errors++;
      if (counting && t >= windowStart && done <= windowEnd) latencies.push(done - t);
      if (stopping) {
        if (outstanding === 0 && drained) drained();
      } else {
        call(socket);
      }
    });
  };
  for (const socket of sockets) {
    socket.on("disconnect", (reason) => { if (!stopping) errors++; });
    call(socket);
  }
  await new Promise((r) => setTimeout(r, opts.warmup * 1000));
  counting = true;
  process.stdout.write('{"phase": "start"}\n');  // the parent samples the other processes' CPU now
  windowStart = now();
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, opts.seconds * 1000));
  windowEnd = now();
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write('{"phase": "end"}\n');
  stopping = true;
  if (outstanding > 0) {
    await new Promise((resolve) => {
      drained = resolve;
      setTimeout(resolve, 10000);
    });
  }
  clearTimeout(overall);
  const elapsed = (windowEnd - windowStart) / 1000;
  latencies.sort((a, b) => a - b);
  const result = {
    clients: opts.clients, transport: opts.transport, seconds: elapsed,
    calls: latencies.length, rate: latencies.length / elapsed,
    p50_ms: percentile(latencies, 0.5), p90_ms: percentile(latencies, 0.9),
    p99_ms: percentile(latencies, 0.99), max_ms: latencies.length ? latencies[latencies.length - 1] : null,
    sent, acked, unanswered: sent - acked, errors, cpu_s: (cpu.user + cpu.system) / 1e6,
  };
  for (const socket of sockets) socket.disconnect();
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
}

main().catch((err) => fail(err && err.message || String(err)));
