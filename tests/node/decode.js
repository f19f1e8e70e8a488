#!/usr/bin/env node
"use strict";
// What the official parsers make of a packet, for siolab's conformance tests.
//
// Reads JSON lines on stdin, writes exactly one JSON line per input line:
//   {"kind": "eio", "raw": "4hello"}         engine.io-parser decodePacket
//   {"kind": "eio", "raw_b64": "AQID"}       ... of a binary frame (bytes)
//       -> {"type": "message", "data": "hello"}   ("data": null when absent)
//   {"kind": "payload", "raw": "4a\x1e4b"}   engine.io-parser decodePayload
//       -> [{"type": ..., "data": ...}, ...]
//   {"kind": "sio", "raw": "2[\"a\"]"}       socket.io-parser Decoder
//       ("raw" is the Socket.IO packet alone, without the Engine.IO "4")
//       -> {"type": n, "nsp": ..., "id": n|null, "data": ...|null}
//       -> {"pending_attachments": n}   when it waits for binary attachments
//          (optional "attachments_b64": [...] are fed to the decoder after
//          "raw"; note a completed binary packet is reported with type 2/3,
//          as the Decoder emits it)
//       -> {"error": message}           when the decoder throws
// Binary data anywhere in the output is {"$bin": [byte, ...]}.
// Bad input gives {"error": ...}; the process never exits on bad input.

const readline = require("readline");
const eioParser = require("engine.io-parser");
const { Decoder } = require("socket.io-parser");

function toJSONable(value) {
  if (value === undefined) return null;
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) {
    const u8 = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return { $bin: Array.from(u8) };
  }
  if (value instanceof ArrayBuffer) return { $bin: Array.from(new Uint8Array(value)) };
  if (Array.isArray(value)) return value.map(toJSONable);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJSONable(v);
    return out;
  }
  return value;
}

function eioPacket(p) {
  return { type: p.type, data: toJSONable(p.data) };
}

function rawInput(msg) {
  if (typeof msg.raw === "string") return msg.raw;
  if (typeof msg.raw_b64 === "string") return Buffer.from(msg.raw_b64, "base64");
  throw new Error("need a string \"raw\" or \"raw_b64\"");
}

function decodeSio(msg) {
  if (typeof msg.raw !== "string") throw new Error("sio needs a string \"raw\"");
  const decoder = new Decoder();
  let decoded = null;
  decoder.on("decoded", (p) => { decoded = p; });
  try {
    decoder.add(msg.raw);
    for (const b64 of msg.attachments_b64 || []) {
      if (decoded) break;
      decoder.add(Buffer.from(String(b64), "base64"));
    }
  } catch (err) {
    return { error: err && err.message ? err.message : String(err) };
  }
  if (decoded) {
    return {
      type: decoded.type,
      nsp: decoded.nsp,
      id: decoded.id === undefined ? null : decoded.id,
      data: toJSONable(decoded.data),
    };
  }
  const rec = decoder.reconstructor;
  if (rec) {
    return { pending_attachments: rec.reconPack.attachments - rec.buffers.length };
  }
  return { error: "no packet decoded" };
}

function handle(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (err) {
    return { error: `bad JSON input: ${err.message}` };
  }
  if (msg === null || typeof msg !== "object") return { error: "input must be a JSON object" };
  try {
    switch (msg.kind) {
      case "eio":
        return eioPacket(eioParser.decodePacket(rawInput(msg), "nodebuffer"));
      case "payload": {
        if (typeof msg.raw !== "string") throw new Error("payload needs a string \"raw\"");
        return eioParser.decodePayload(msg.raw, "nodebuffer").map(eioPacket);
      }
      case "sio":
        return decodeSio(msg);
      default:
        return { error: `unknown kind: ${JSON.stringify(msg.kind)}` };
    }
  } catch (err) {
    return { error: err && err.message ? err.message : String(err) };
  }
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
rl.on("line", (line) => {
  let out;
  try {
    out = JSON.stringify(handle(line));
  } catch (err) {
    out = JSON.stringify({ error: `internal: ${err && err.message || err}` });
  }
  process.stdout.write(out + "\n");
});
// On stdin EOF readline closes and the process exits by itself once output is flushed.
process.stdout.on("error", () => process.exit(0)); // reader went away
