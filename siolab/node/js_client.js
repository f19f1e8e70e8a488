#!/usr/bin/env node
"use strict";
// The official socket.io-client, in Node.js, driven by the kernel: for siolab.js_client.
//
//   node js_client.js [--port N]      (--port is ignored: a client listens on nothing)
//
// stdin's first line: {"url", "name", "options": {<io() options>}, "package": "socket.io-client"}; every
// later line is a command: {"id", "op": "emit", "event", "args", "ack": bool, "timeout": ms}, {"id", "op":
// "connect"}, {"id", "op": "disconnect"}, {"id", "op": "eval", "code"} (run with `socket` and `io` in
// scope; its value, awaited, is the answer). stdout carries one JSON object a line:
//   {"port": 0}                                         ready (the socket is made; it connects on its own)
//   {"type": "connect", "sid", "recovered"}             and "disconnect" {reason, description},
//   "connect_error" {message, description, data}, "event" {event, args}, "reconnect_attempt" {attempt},
//   "reconnect_failed" {}, "done" {id, value} / {id, error}: the answer to a command; "log" {level, text}.
// Exits when stdin (the pipe from the kernel) closes.

const util = require("util");
const { installShutdown, fail } = require("./common");

const out = (message) => process.stdout.write(JSON.stringify(message) + "\n");

for (const level of ["log", "info", "debug", "warn", "error"]) {
  console[level] = (...args) => out({ type: "log", level, text: util.format(...args) });
}

function describe(value) {
  if (value === undefined) return null;
  try {
    return JSON.parse(JSON.stringify(value, (k, v) => (v instanceof Error ? { message: v.message } : v)));
  } catch (_) {
    return util.inspect(value);
  }
}

let socket = null;

function start(config) {
  const module_ = require(config.package || "socket.io-client");
  const io = module_.io || module_; // v2 exports the function itself
  const options = { ...(config.options || {}) };
  options.query = { ...(options.query || {}), siolab_client: config.name };
  socket = io(config.url, options);
  socket.on("connect", () => out({ type: "connect", sid: socket.id, recovered: Boolean(socket.recovered) }));
  socket.on("disconnect", (reason, details) => out({ type: "disconnect", reason, description: describe(details) }));
  socket.on("connect_error", (err) => out({
    type: "connect_error", message: err && err.message, description: describe(err && err.description),
    data: describe(err && err.data),
  }));
  if (socket.onAny) socket.onAny((event, ...args) => out({ type: "event", event, args: describe(args) }));
  else { // socket.io-client 2 has no onAny: wrap the packet handler
    const onevent = socket.onevent;
    socket.onevent = function (packet) {
      const [event, ...args] = packet.data || [];
      out({ type: "event", event, args: describe(args) });
      return onevent.call(this, packet);
    };
  }
  const manager = socket.io;
  manager.on("reconnect_attempt", (attempt) => out({ type: "reconnect_attempt", attempt }));
  manager.on("reconnect_failed", () => out({ type: "reconnect_failed" }));
  out({ port: 0 });
  return io;
}

async function run(io, command) {
  const { op } = command;
  if (op === "emit") {
    const args = command.args || [];
    if (!command.ack) {
      socket.emit(command.event, ...args);
      return null;
    }
    const target = command.timeout ? socket.timeout(command.timeout) : socket;
    return await new Promise((resolve, reject) => target.emit(command.event, ...args, (...answer) => {
      if (command.timeout) {
        const [err, ...rest] = answer;
        if (err) return reject(err);
        return resolve(rest.length === 1 ? rest[0] : rest);
      }
      resolve(answer.length === 1 ? answer[0] : answer);
    }));
  }
  if (op === "connect") return socket.connect() && null;
  if (op === "disconnect") return socket.disconnect() && null;
  if (op === "eval") {
    const fn = new Function("socket", "io", `return (async () => (${command.code}))();`);
    return await fn(socket, io);
  }
  throw new Error(`unknown command ${JSON.stringify(op)}`);
}

let io = null;
let buffered = "";
installShutdown(() => socket && socket.disconnect());
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  buffered += chunk;
  let end;
  while ((end = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    let message;
    try {
      message = JSON.parse(line);
    } catch (err) {
      fail(`a line of stdin is not JSON: ${err.message}`);
    }
    if (io === null) {
      try {
        io = start(message);
      } catch (err) {
        out({ type: "fatal", kind: "internal", name: err.name, message: err.message, summary: String(err.stack) });
        process.exit(1);
      }
      continue;
    }
    run(io, message).then(
      (value) => out({ type: "done", id: message.id, value: describe(value) }),
      (err) => out({ type: "done", id: message.id, error: String(err && err.message ? err.message : err) }),
    );
  }
});
