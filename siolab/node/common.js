"use strict";
// Shared helpers for the siolab Node.js servers (sio_server.js here, tests/node/eio_server.js).

const fs = require("fs");

// Parse `--port N`, `--port=N`, `--ping-interval MS`, `--ping-timeout MS`,
// `--path P`. Each option can also come from the environment
// (SIOLAB_PORT, SIOLAB_PING_INTERVAL, SIOLAB_PING_TIMEOUT, SIOLAB_PATH);
// argv wins over the environment, which wins over the defaults.
function parseServerArgs(defaults, argv = process.argv.slice(2)) {
  const envNames = {
    port: "SIOLAB_PORT",
    "ping-interval": "SIOLAB_PING_INTERVAL",
    "ping-timeout": "SIOLAB_PING_TIMEOUT",
    path: "SIOLAB_PATH",
  };
  const opts = {};
  for (const [key, env] of Object.entries(envNames)) {
    opts[key] = process.env[env] !== undefined && process.env[env] !== ""
      ? process.env[env]
      : defaults[key];
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith("--")) {
      fail(`unexpected argument: ${arg}`);
    }
    let key = arg.slice(2);
    let value;
    const eq = key.indexOf("=");
    if (eq >= 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    } else {
      value = argv[++i];
    }
    if (!(key in envNames)) fail(`unknown option: --${key}`);
    if (value === undefined) fail(`missing value for --${key}`);
    opts[key] = value;
  }
  const num = (k) => {
    const n = Number(opts[k]);
    if (!Number.isInteger(n) || n < 0) fail(`--${k} must be a non-negative integer, got ${opts[k]}`);
    return n;
  };
  return {
    port: num("port"),
    pingInterval: num("ping-interval"),
    pingTimeout: num("ping-timeout"),
    path: String(opts.path),
  };
}

function fail(msg) {
  process.stderr.write(`error: ${msg}\n`);
  process.exit(2);
}

// Print the single `{"port": n}` line that tells the parent where we listen.
function announcePort(port) {
  process.stdout.write(JSON.stringify({ port }) + "\n");
}

// Exit cleanly on SIGTERM/SIGINT, and when stdin reaches EOF *if* stdin is a
// pipe or socket (i.e. a parent process is holding the other end: when it dies
// the pipe closes and we follow). A stdin of /dev/null or a terminal is not
// watched, so the server can also be started by hand or in the background.
function installShutdown(closeFn) {
  let closing = false;
  const shutdown = (why) => {
    if (closing) return;
    closing = true;
    // Hard deadline in case some handle keeps the loop alive.
    setTimeout(() => process.exit(0), 2000).unref();
    Promise.resolve()
      .then(() => closeFn(why))
      .catch((err) => process.stderr.write(`close error: ${err && err.stack || err}\n`))
      .finally(() => process.exit(0));
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  let watchStdin = false;
  try {
    const st = fs.fstatSync(0);
    watchStdin = st.isFIFO() || st.isSocket();
  } catch (_) {
    watchStdin = false;
  }
  if (watchStdin) {
    process.stdin.on("data", () => {}); // discard anything written to us
    process.stdin.on("end", () => shutdown("stdin closed"));
    process.stdin.on("close", () => shutdown("stdin closed"));
    process.stdin.on("error", () => shutdown("stdin error"));
    process.stdin.resume();
  }
  return shutdown;
}

module.exports = { parseServerArgs, announcePort, installShutdown, fail };
