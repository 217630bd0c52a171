// graphql-ws subscription client driven by the Rust integration tests.
//
// Env: CURBPAY_WS_URL (required), CURBPAY_TOKEN, QUERY (required),
//      VARIABLES (JSON object), COUNT, TIMEOUT_MS (default 20000).
//
// Prints one JSON object per line on stdout:
//   {"type":"connected"}
//   {"type":"next","payload":<ExecutionResult>}
//   {"type":"error","error":<GraphQLError[] | {code,reason} | {message}>}
//   {"type":"complete"}
//   {"type":"closed","code":<n>,"reason":"..."}
//   {"type":"timeout"}
//
// Exit codes:
//   0 completed by server, COUNT results received, or socket closed with 1000
//   1 subscription error (GraphQL error payload)
//   2 socket closed / transport error before completion
//   3 TIMEOUT_MS reached
//   4 bad configuration (missing/invalid env)

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

let lastWrite = Promise.resolve();
let finished = false;

function emit(obj) {
  const line = JSON.stringify(obj) + '\n';
  lastWrite = new Promise((resolve) => {
    process.stdout.write(line, () => resolve());
  });
}

// Parent went away (EPIPE etc.): nothing left to report to.
process.stdout.on('error', () => process.exit(process.exitCode ?? 2));

let client;
let unsubscribe;
let timer;

function finish(code) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  process.exitCode = code;
  try {
    unsubscribe?.();
  } catch {}
  try {
    const p = client?.dispose();
    if (p && typeof p.catch === 'function') p.catch(() => {});
  } catch {}
  // Let the event loop drain naturally; if something (e.g. a lingering
  // socket) keeps it alive, force the exit once stdout has been flushed.
  lastWrite.then(() => {
    setTimeout(() => process.exit(code), 500).unref();
  });
}

function isLikeCloseEvent(v) {
  return v != null && typeof v === 'object' && 'code' in v && 'reason' in v;
}

function formatError(err) {
  if (Array.isArray(err)) return err;
  if (isLikeCloseEvent(err)) return { code: err.code, reason: String(err.reason ?? '') };
  if (err instanceof Error) return { message: err.message };
  if (err != null && typeof err === 'object') {
    // e.g. ws ErrorEvent on connection failure
    const message = err.message ?? err.error?.message;
    if (message !== undefined) return { message: String(message) };
  }
  return { message: String(err) };
}

function usage(message) {
  emit({ type: 'error', error: { message } });
  process.exitCode = 4;
}

const url = process.env.CURBPAY_WS_URL;
const token = process.env.CURBPAY_TOKEN ?? '';
const query = process.env.QUERY;
const timeoutMs = Number(process.env.TIMEOUT_MS || 20000);
let count;
let variables;

function parseConfig() {
  if (!url) return usage('CURBPAY_WS_URL is required'), false;
  if (!query) return usage('QUERY is required'), false;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0)
    return usage('TIMEOUT_MS must be a positive number'), false;
  if (process.env.COUNT) {
    count = Number(process.env.COUNT);
    if (!Number.isInteger(count) || count <= 0)
      return usage('COUNT must be a positive integer'), false;
  }
  if (process.env.VARIABLES) {
    try {
      variables = JSON.parse(process.env.VARIABLES);
    } catch (e) {
      return usage(`VARIABLES is not valid JSON: ${e.message}`), false;
    }
    if (variables === null || typeof variables !== 'object' || Array.isArray(variables))
      return usage('VARIABLES must be a JSON object'), false;
  }
  return true;
}

if (parseConfig()) {
  timer = setTimeout(() => {
    if (finished) return;
    emit({ type: 'timeout' });
    finish(3);
  }, timeoutMs);

  client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: token ? { Authorization: `Bearer ${token}` } : undefined,
    retryAttempts: 0,
    keepAlive: 5000,
    on: {
      connected: () => {
        if (!finished) emit({ type: 'connected' });
      },
      closed: (event) => {
        if (finished) return;
        const code = event?.code;
        emit({ type: 'closed', code, reason: String(event?.reason ?? '') });
        // graphql-ws reports the close to the subscription sink (error) in a
        // later microtask; give it the chance to print its line first. A 1000
        // close would otherwise make graphql-ws silently reconnect.
        setImmediate(() => finish(code === 1000 ? 0 : 2));
      },
    },
  });

  let received = 0;
  unsubscribe = client.subscribe(
    { query, ...(variables !== undefined ? { variables } : {}) },
    {
      next: (result) => {
        if (finished) return;
        emit({ type: 'next', payload: result });
        received += 1;
        if (count !== undefined && received >= count) finish(0);
      },
      error: (err) => {
        if (finished) return;
        emit({ type: 'error', error: formatError(err) });
        finish(Array.isArray(err) ? 1 : 2);
      },
      complete: () => {
        if (finished) return;
        emit({ type: 'complete' });
        finish(0);
      },
    },
  );
}
