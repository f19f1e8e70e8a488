#!/usr/bin/env node
"use strict";
// The official Socket.IO server running the learner's JavaScript, for siolab.node_lab.
//
//   node lab_server.js [--port N]      (the configuration comes as one JSON line on stdin)
//
// stdin's first line: {"code": "<JavaScript>", "options": {<Server options>}, "origins": null | "*" | [...],
//                     "adapter": {"url": "redis://..."} (optional: the Redis adapter, for several servers)}.
// The code runs with `io` (the Server), `require` (resolving from this directory), `Server`, `module`,
// `exports` in scope; top-level `await` works. stdout carries one JSON object a line, read by the lab:
//   {"port": n}                                          listening (after the code ran)
//   {"type": "log", "level": "log", "text", "sid"}       console.log/info/debug/warn/error
//   {"type": "error", "where", "name", "message", "stack", "sid"}   a throw, caught; the server goes on
//   {"type": "closed", "sid", "reason"}                  an Engine.IO session ended
//   {"type": "refused", "code", "message", "detail"}     engine.io refused a request (connection_error)
//   {"type": "fatal", ...}                               the code did not compile or threw: then exit 1
// `sid` is the Engine.IO session of the socket whose handler was running, when there was one.
// Binds 127.0.0.1; exits on SIGTERM/SIGINT or when stdin (the pipe from the kernel) closes.

const http = require("http");
const path = require("path");
const util = require("util");
const vm = require("vm");
const { AsyncLocalStorage } = require("async_hooks");
const { createRequire } = require("module");
const { Server, Namespace, Socket } = require("socket.io");
const { installShutdown, fail } = require("./common");

const FILENAME = "lab.js";
const out = process.stdout.write.bind(process.stdout);
const context = new AsyncLocalStorage(); // {sid} of the socket whose handler is running

function report(message) {
  const ctx = context.getStore();
  if (ctx && ctx.sid && message.sid === undefined) message.sid = ctx.sid;
  out(JSON.stringify(message) + "\n");
}

// ---------------------------------------------------------------- console -> the trace

for (const level of ["log", "info", "debug", "warn", "error"]) {
  console[level] = (...args) => report({ type: "log", level, text: util.format(...args) });
}
console.dir = (obj, options) => report({ type: "log", level: "dir", text: util.inspect(obj, options) });
console.trace = (...args) => {
  const stack = new Error().stack.split("\n").slice(2).join("\n");
  report({ type: "log", level: "trace", text: `Trace: ${util.format(...args)}\n${stack}` });
};

// ---------------------------------------------------------------- throws are caught and reported

// The learner's frames only: from where our wrappers (or socket.io's internals) called the code, cut.
function learnerStack(err) {
  const stack = err && err.stack ? String(err.stack) : String(err);
  const lines = stack.split("\n");
  const cut = lines.findIndex((l, i) => i > 0 && /^\s+at /.test(l) && (l.includes(__filename) ||
    l.includes(`${path.sep}node_modules${path.sep}`) || l.includes("node:internal")));
  return (cut > 0 ? lines.slice(0, cut) : lines).join("\n");
}

function reportError(err, where, sid) {
  report({
    type: "error", where, sid,
    name: err && err.name ? err.name : typeof err,
    message: err && err.message !== undefined ? String(err.message) : String(err),
    stack: learnerStack(err),
  });
}

process.on("uncaughtException", (err) => reportError(err, "uncaught exception"));
process.on("unhandledRejection", (err) => reportError(err, "unhandled promise rejection"));

function sidOf(socket) {
  return socket instanceof Socket && socket.conn ? socket.conn.id : undefined;
}

// One wrapper per listener (so off/removeListener find it): runs it with its socket as context and
// reports a throw, or a rejected promise, instead of letting it take the server down.
const wrappers = new WeakMap();

function guarded(event, fn) {
  if (typeof fn !== "function") return fn;
  let wrapper = wrappers.get(fn);
  if (wrapper) return wrapper;
  wrapper = function (...args) {
    const socket = this instanceof Socket ? this : args[0];
    const sid = sidOf(socket);
    const where = `the ${JSON.stringify(String(event))} handler`;
    return context.run({ sid }, () => {
      try {
        const result = fn.apply(this, args);
        if (result && typeof result.then === "function") {
          result.then(undefined, (err) => context.run({ sid }, () => reportError(err, where, sid)));
        }
        return result;
      } catch (err) {
        reportError(err, where, sid);
        return undefined;
      }
    });
  };
  wrappers.set(fn, wrapper);
  return wrapper;
}

// A middleware that throws refuses the connection (or the event) with the thrown error, as if it had
// called next(err); plain Node.js would crash instead.
function guardedMiddleware(fn, what, socketOf) {
  if (typeof fn !== "function") return fn;
  return function (first, next) {
    const sid = sidOf(socketOf(first));
    let called = false;
    const once = (err) => {
      if (called) return;
      called = true;
      next(err);
    };
    const fail = (err) => {
      reportError(err, what, sid);
      once(err instanceof Error ? err : new Error(String(err)));
    };
    return context.run({ sid }, () => {
      try {
        const result = fn.call(this, first, once);
        if (result && typeof result.then === "function") result.then(undefined, (err) => context.run({ sid }, () => fail(err)));
        return result;
      } catch (err) {
        fail(err);
        return undefined;
      }
    });
  };
}

function wrapListeners(proto) {
  for (const name of ["on", "addListener", "once", "prependListener", "prependOnceListener"]) {
    const original = proto[name];
    proto[name] = function (event, fn) {
      return original.call(this, event, guarded(event, fn));
    };
  }
  for (const name of ["off", "removeListener"]) {
    const original = proto[name];
    proto[name] = function (event, fn) {
      return original.call(this, event, (fn && wrappers.get(fn)) || fn);
    };
  }
}

wrapListeners(Namespace.prototype);
wrapListeners(Socket.prototype);
for (const name of ["onAny", "prependAny", "onAnyOutgoing", "prependAnyOutgoing"]) {
  const original = Socket.prototype[name];
  Socket.prototype[name] = function (fn) {
    return original.call(this, guarded(name, fn));
  };
}
for (const name of ["offAny", "offAnyOutgoing"]) {
  const original = Socket.prototype[name];
  Socket.prototype[name] = function (fn) {
    return original.call(this, (fn && wrappers.get(fn)) || fn);
  };
}
const namespaceUse = Namespace.prototype.use;
Namespace.prototype.use = function (fn) {
  return namespaceUse.call(this, guardedMiddleware(fn, `a middleware of ${this.name} (io.use)`, (s) => s));
};
const socketUse = Socket.prototype.use;
Socket.prototype.use = function (fn) {
  const socket = this;
  return socketUse.call(this, guardedMiddleware(fn, "a socket middleware (socket.use)", () => socket));
};

// ---------------------------------------------------------------- who may connect from a page

// Like siolab.server.same_host_origin: a page whose Origin names the host (and port) the request was
// sent to (Host, or X-Forwarded-Host behind a proxy) may connect; clients sending no Origin always may.
function hostPort(value) {
  try {
    const u = new URL(`http://${value.trim()}`);
    return [u.hostname.toLowerCase(), u.port === "" ? null : Number(u.port)];
  } catch (_) {
    return null;
  }
}

function sameHost(origin, headers) {
  let page;
  try {
    page = new URL(origin);
  } catch (_) {
    return false;
  }
  const scheme = page.protocol.replace(":", "");
  if (!["http", "https"].includes(scheme) || !page.hostname || !["", "/"].includes(page.pathname)) return false;
  const pagePort = page.port === "" ? null : Number(page.port);
  const defaultPort = { http: 80, https: 443 }[scheme];
  for (const header of ["host", "x-forwarded-host"]) {
    const value = headers[header];
    const asked = value ? hostPort(String(value).split(",")[0]) : null;
    if (!asked || asked[0] !== page.hostname.toLowerCase()) continue;
    if (asked[1] === pagePort || (asked[1] !== null && pagePort === null && asked[1] === defaultPort)) return true;
  }
  return false;
}

function originAccepted(origins, req) {
  const origin = req.headers.origin;
  if (!origin || origins === "*") return true;
  if (origins === null || origins === undefined) return sameHost(origin, req.headers);
  return origins.includes(origin);
}

// ---------------------------------------------------------------- the learner's code

// The code as the body of an async function (top-level await works); line 1 of the code is line 1 of lab.js.
function compile(code) {
  const params = ["io", "require", "module", "exports", "Server", "__filename", "__dirname"];
  const source = `(async function (${params.join(", ")}) {\n${code}\n})`;
  try {
    return new vm.Script(source, { filename: FILENAME, lineOffset: -1 }).runInThisContext();
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
    const line = Number((String(err.stack).match(/^lab\.js:(\d+)/) || [])[1]);
    const lines = code.split("\n");
    if (!(line > lines.length)) throw err;
    // the error is past the code (an unclosed bracket ate our closing one): compile the code alone,
    // not async, for the message V8 gives about the code itself
    try {
      vm.compileFunction(code, params, { filename: FILENAME });
    } catch (plain) {
      if (plain instanceof SyntaxError && !/await/.test(plain.message)) throw plain;
    }
    throw err;
  }
}

function syntaxDetails(err, code) {
  const stack = String(err.stack || err);
  const lines = code.split("\n");
  const at = stack.match(/^lab\.js:(\d+)/);
  const caret = stack.match(/^lab\.js:\d+\n.*\n(\s*)\^/);
  let line = at ? Number(at[1]) : null;
  let column = caret ? caret[1].length + 1 : null;
  if (line !== null && (line > lines.length || !lines[line - 1].trim())) {
    // past the end (an unclosed bracket or string): point at the last line that has something on it
    line = lines.length - [...lines].reverse().findIndex((l) => l.trim());
    line = line > lines.length ? null : line;
    column = null;
  }
  return {
    line,
    column,
    text: line ? lines[line - 1] : null,
    summary: stack.split("\n").filter((l) => !/^\s+at /.test(l)).join("\n").replace(/\n{3,}/g, "\n\n").trim(),
  };
}

function runtimeDetails(err, code) {
  const stack = learnerStack(err);
  const at = stack.match(/lab\.js:(\d+):(\d+)/);
  const line = at ? Number(at[1]) : null;
  return { line, column: at ? Number(at[2]) : null, text: line ? code.split("\n")[line - 1] : null, summary: stack };
}

async function main(config) {
  const code = String(config.code || "");
  const options = config.options || {};
  const port = Number(argPort());
  let run;
  try {
    run = compile(code);
  } catch (err) {
    report({ type: "fatal", kind: "syntax", name: err.name, message: err.message, ...syntaxDetails(err, code) });
    process.exit(1);
  }
  // Requests outside the engine's path get a 404 instead of hanging.
  const httpServer = http.createServer((req, res) => {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found\n");
  });
  const origins = config.origins === undefined ? null : config.origins;
  const io = new Server(httpServer, {
    allowRequest: (req, callback) => {
      if (originAccepted(origins, req)) return callback(null, true);
      callback(`${req.headers.origin} is not an accepted origin.`, false);
    },
    ...options,
  });
  const adapterClients = config.adapter ? await redisAdapter(io, config.adapter) : [];
  io.engine.on("connection", (conn) => {
    conn.on("close", (reason) => report({ type: "closed", sid: conn.id, reason }));
  });
  io.engine.on("connection_error", (err) => {
    const context = err.context || {};
    report({ type: "refused", code: err.code, message: err.message,
      detail: context.message || (Object.keys(context).length ? JSON.stringify(context) : undefined) });
  });
  const labFile = path.join(__dirname, FILENAME);
  const labModule = { exports: {} };
  try {
    await run(io, createRequire(labFile), labModule, labModule.exports, Server, labFile, __dirname);
  } catch (err) {
    report({ type: "fatal", kind: "runtime", name: err && err.name, message: err && err.message,
      ...runtimeDetails(err, code) });
    process.exit(1);
  }
  closeServer = () => new Promise((resolve) => io.close(() => resolve()))
    .then(() => Promise.all(adapterClients.map((c) => c.quit().catch(() => undefined))));
  httpServer.on("error", (err) => {
    report({ type: "fatal", kind: "listen", name: err.name, message: err.message, summary: String(err.stack) });
    process.exit(1);
  });
  httpServer.listen(port, "127.0.0.1", () => out(JSON.stringify({ port: httpServer.address().port }) + "\n"));
}

// Several servers of one app (siolab.start(node=JS, servers=2)): the official Redis adapter on the lab's
// broker, so io.emit and io.to(room).emit reach the clients of every server. Connected before the code runs.
async function redisAdapter(io, adapter) {
  const { createAdapter } = require("@socket.io/redis-adapter");
  const { createClient } = require("@redis/client");
  const pub = createClient({ url: adapter.url });
  const sub = pub.duplicate();
  for (const [name, client] of [["publisher", pub], ["subscriber", sub]]) {
    client.on("error", (err) => report({ type: "log", level: "error", text: `redis adapter ${name}: ${err.message}` }));
  }
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub, adapter.key ? { key: adapter.key } : {}));
  return [pub, sub];
}

function argPort() {
  const argv = process.argv.slice(2);
  if (argv.length === 0) return 0;
  if (argv.length !== 2 || argv[0] !== "--port" || !/^\d+$/.test(argv[1])) fail(`usage: lab_server.js [--port N]`);
  return argv[1];
}

// The configuration is stdin's first line; stdin stays open after it (its end means the kernel is gone).
let closeServer = () => undefined;
installShutdown(() => closeServer());
let buffered = "";
let started = false;
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  if (started) return;
  buffered += chunk;
  const end = buffered.indexOf("\n");
  if (end < 0) return;
  started = true;
  let config;
  try {
    config = JSON.parse(buffered.slice(0, end));
  } catch (err) {
    fail(`the first line of stdin is not JSON: ${err.message}`);
  }
  main(config).catch((err) => {
    report({ type: "fatal", kind: "internal", name: err.name, message: err.message, summary: String(err.stack) });
    process.exit(1);
  });
});
