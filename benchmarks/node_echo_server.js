#!/usr/bin/env node
"use strict";
// The scale benchmark's server: the official Node.js `socket.io` (pinned in tests/node) with an "echo"
// event that acknowledges with its arguments, and nothing else.
//
//   node benchmarks/node_echo_server.js      -> prints {"port": n, "pid": n}; exits when stdin (a pipe) closes
//
// Modules come from tests/node/node_modules (make setup-test), required by path.

const path = require("path");
const http = require("http");

const MODULES = path.join(__dirname, "..", "tests", "node", "node_modules");
const { Server } = require(path.join(MODULES, "socket.io"));

const httpServer = http.createServer((req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("not found\n");
});
const io = new Server(httpServer, { pingInterval: 25000, pingTimeout: 20000 });

io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (ack) ack(...args);
  });
});

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: httpServer.address().port, pid: process.pid }) + "\n");
});

const stop = () => {
  setTimeout(() => process.exit(0), 1000).unref();
  io.close(() => process.exit(0));
};
try {
  const st = require("fs").fstatSync(0);
  if (st.isFIFO() || st.isSocket()) {  // a parent holds the other end: when it goes, so does this server
    process.stdin.on("data", () => {});
    process.stdin.on("end", stop);
    process.stdin.resume();
  }
} catch (_) { /* no stdin */ }
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
