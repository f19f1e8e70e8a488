#!/usr/bin/env node
"use strict";
// Reference Socket.IO server (the official `socket.io` package) for siolab.reference and its tests.
//
//   node sio_server.js [--port N] [--ping-interval MS] [--ping-timeout MS] [--path P]
//
// Binds 127.0.0.1, prints one line `{"port": <n>}` once listening.
// "/" and "/admin": event "echo" acks with the same args (if an ack is asked
//   for) and emits "echo" back with them. "/": event "message" is broadcast to
//   every client of "/" as io.emit("message", ...args).
// Exits on SIGTERM/SIGINT, or when stdin (if a pipe) is closed.

const http = require("http");
const { Server } = require("socket.io");
const { parseServerArgs, announcePort, installShutdown } = require("./common");

const opts = parseServerArgs({
  port: 0,
  "ping-interval": 25000,
  "ping-timeout": 20000,
  path: "/socket.io/",
});

// Requests outside the engine's path get a 404 instead of hanging.
const httpServer = http.createServer((req, res) => {
  res.writeHead(404, { "Content-Type": "text/plain" });
  res.end("not found\n");
});
const io = new Server(httpServer, {
  path: opts.path,
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  cors: { origin: true, credentials: true },
});

function splitAck(args) {
  if (args.length > 0 && typeof args[args.length - 1] === "function") {
    return { args: args.slice(0, -1), ack: args[args.length - 1] };
  }
  return { args, ack: null };
}

function onEcho(socket) {
  return (...raw) => {
    const { args, ack } = splitAck(raw);
    if (ack) ack(...args);
    socket.emit("echo", ...args);
  };
}

io.on("connection", (socket) => {
  socket.on("echo", onEcho(socket));
  socket.on("message", (...raw) => {
    const { args } = splitAck(raw);
    io.emit("message", ...args);
  });
});

io.of("/admin").on("connection", (socket) => {
  socket.on("echo", onEcho(socket));
});

installShutdown(() => new Promise((resolve) => io.close(() => resolve())));

httpServer.on("error", (err) => {
  process.stderr.write(`server error: ${err.stack || err}\n`);
  process.exit(1);
});
httpServer.listen(opts.port, "127.0.0.1", () => {
  announcePort(httpServer.address().port);
});
