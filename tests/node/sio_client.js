#!/usr/bin/env node
"use strict";
// Reference Socket.IO client (the official `socket.io-client` package) for
// siolab tests.
//
//   node sio_client.js BASE_URL [--name NAME] [--transports polling,websocket]
//
// Connects to "/" of BASE_URL (e.g. http://127.0.0.1:1234), waits for the
// upgrade to websocket (or 2 s when websocket is not among the transports),
// emits "echo" "hi" with an ack, then "echo" Buffer[1,2,3,4] with an ack, and
// prints one JSON line:
//   {"connected": true, "id": ..., "transport": ..., "ack": [...ack args],
//    "binary_ack_len": n}
// then disconnects and exits 0. On any error, or after 10 s overall, prints
// {"error": "..."} and exits 1.

const { io } = require("socket.io-client");

const OVERALL_TIMEOUT_MS = 10000;
const ACK_TIMEOUT_MS = 5000;
const NO_WS_WAIT_MS = 2000;

let finished = false;
let socket = null;

function finish(obj, code) {
  if (finished) return;
  finished = true;
  try {
    if (socket) socket.disconnect();
  } catch (_) { /* ignore */ }
  process.stdout.write(JSON.stringify(obj) + "\n", () => process.exit(code));
}

function fail(err) {
  const msg = err instanceof Error ? err.message : String(err);
  finish({ error: msg || "unknown error" }, 1);
}

function parseArgs(argv) {
  const out = { url: null, name: null, transports: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    let key = null;
    let value;
    if (arg.startsWith("--")) {
      key = arg.slice(2);
      const eq = key.indexOf("=");
      if (eq >= 0) {
        value = key.slice(eq + 1);
        key = key.slice(0, eq);
      } else {
        value = argv[++i];
      }
      if (value === undefined) throw new Error(`missing value for --${key}`);
      if (key === "name") out.name = value;
      else if (key === "transports") {
        out.transports = value.split(",").map((s) => s.trim()).filter(Boolean);
        if (out.transports.length === 0) throw new Error("--transports is empty");
      } else throw new Error(`unknown option: --${key}`);
    } else if (out.url === null) {
      out.url = arg;
    } else {
      throw new Error(`unexpected argument: ${arg}`);
    }
  }
  if (!out.url) throw new Error("usage: sio_client.js BASE_URL [--name NAME] [--transports a,b]");
  return out;
}

// Like socket.timeout(ms).emitWithAck(...), but resolves with *all* the ack
// arguments (emitWithAck only resolves with the first one).
function emitWithAckAll(sock, ev, ...args) {
  return new Promise((resolve, reject) => {
    sock.timeout(ACK_TIMEOUT_MS).emit(ev, ...args, (err, ...ackArgs) => {
      if (err) reject(err);
      else resolve(ackArgs);
    });
  });
}

function byteLength(x) {
  if (Buffer.isBuffer(x) || ArrayBuffer.isView(x)) return x.byteLength;
  if (x instanceof ArrayBuffer) return x.byteLength;
  return null;
}

function waitForTransport(sock, wantWebsocket) {
  return new Promise((resolve, reject) => {
    if (!wantWebsocket) {
      setTimeout(resolve, NO_WS_WAIT_MS);
      return;
    }
    const engine = sock.io.engine;
    if (engine.transport && engine.transport.name === "websocket") {
      resolve();
      return;
    }
    engine.once("upgrade", () => resolve());
    engine.once("upgradeError", (err) => reject(new Error(`upgrade error: ${err && err.message || err}`)));
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const options = { reconnection: false, forceNew: true, timeout: OVERALL_TIMEOUT_MS };
  if (args.name !== null) options.query = { siolab_client: args.name };
  if (args.transports) options.transports = args.transports;
  const wantWebsocket = args.transports ? args.transports.includes("websocket") : true;

  socket = io(args.url, options);
  socket.on("connect_error", (err) => fail(new Error(`connect_error: ${err.message}`)));
  socket.on("disconnect", (reason) => {
    if (!finished) fail(new Error(`disconnected: ${reason}`));
  });

  await new Promise((resolve) => socket.once("connect", resolve));
  await waitForTransport(socket, wantWebsocket);

  const ack = await emitWithAckAll(socket, "echo", "hi");
  const binAck = await emitWithAckAll(socket, "echo", Buffer.from([1, 2, 3, 4]));

  finish({
    connected: socket.connected,
    id: socket.id,
    transport: socket.io.engine.transport.name,
    ack,
    binary_ack_len: byteLength(binAck[0]),
  }, 0);
}

// Also keeps the process alive until finish() calls process.exit().
setTimeout(() => fail(new Error(`timeout after ${OVERALL_TIMEOUT_MS} ms`)), OVERALL_TIMEOUT_MS);
process.on("uncaughtException", fail);
process.on("unhandledRejection", fail);
main().catch(fail);
