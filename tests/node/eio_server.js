#!/usr/bin/env node
"use strict";
// Reference Engine.IO server (the official `engine.io` package, no Socket.IO
// layer) for siolab tests.
//
//   node eio_server.js [--port N] [--ping-interval MS] [--ping-timeout MS] [--path P]
//
// Binds 127.0.0.1, path /engine.io/ by default, prints one line
// `{"port": <n>}` once listening, and echoes every message (text or binary)
// back to the socket that sent it.
// Exits on SIGTERM/SIGINT, or when stdin (if a pipe) is closed.

const http = require("http");
const engine = require("engine.io");
const { parseServerArgs, announcePort, installShutdown } = require("../../siolab/node/common");

const opts = parseServerArgs({
  port: 0,
  "ping-interval": 300,
  "ping-timeout": 200,
  path: "/engine.io/",
});

// Requests outside the engine's path get a 404 instead of hanging.
const httpServer = http.createServer((req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("not found\n");
});
const eio = engine.attach(httpServer, {
  path: opts.path,
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  cors: { origin: true, credentials: true },
});

eio.on("connection", (socket) => {
  socket.on("message", (data) => {
    socket.send(data);
  });
});

installShutdown(() => new Promise((resolve) => {
  eio.close();
  httpServer.close(() => resolve());
  httpServer.closeAllConnections();
}));

httpServer.on("error", (err) => {
  process.stderr.write(`server error: ${err.stack || err}\n`);
  process.exit(1);
});
httpServer.listen(opts.port, "127.0.0.1", () => {
  announcePort(httpServer.address().port);
});
