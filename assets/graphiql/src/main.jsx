// Self-hosted GraphiQL page for the curbpay GraphQL server.
//
// Bundled by ../build.sh into ../dist/graphiql.{js,css}; nothing is loaded
// from a CDN at run time.
//
// Endpoints (same origin as the page):
//   queries / mutations : HTTP POST  /graphql
//   subscriptions       : WebSocket  ws(s)://<host>/graphql  (graphql-transport-ws)
//
// Auth: the user types `{"Authorization": "Bearer <JWT>"}` into the Headers
// editor. Those headers go on every HTTP request, and for subscriptions they
// are sent as the `connection_init` payload. No token is ever baked into the
// page, and headers are never written to localStorage.

import React from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import { parse } from 'graphql';
import { createClient } from 'graphql-ws';

import 'graphiql/style.css';

const HTTP_URL = '/graphql';
const WS_URL =
  (window.location.protocol === 'https:' ? 'wss:' : 'ws:') +
  '//' +
  window.location.host +
  '/graphql';

const DEFAULT_QUERY = `# curbpay GraphQL explorer
#
# 1. Paste the token printed by \`curbpay serve\`
#    into the Headers tab below:
#      {"Authorization": "Bearer <token>"}
# 2. Run with the play button or Ctrl-Enter.
#
# Subscriptions use a WebSocket to /graphql; the
# same headers are sent in connection_init.

query {
  viewer {
    role
    appId
    operatorId
  }
}
`;

const DEFAULT_HEADERS = `{"Authorization": "Bearer "}`;

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

/**
 * Normalise the object parsed from the Headers editor into string -> string.
 * An `Authorization: Bearer` with no token (the untouched default) is dropped,
 * so that e.g. schema introspection still works anonymously if the server
 * allows it, instead of failing on a malformed header.
 */
function normaliseHeaders(raw) {
  const out = {};
  if (!raw || typeof raw !== 'object') return out;
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined || value === null) continue;
    const str = typeof value === 'string' ? value : JSON.stringify(value);
    if (name.toLowerCase() === 'authorization' && /^\s*bearer\s*$/i.test(str)) {
      continue;
    }
    out[name] = str;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Operation type detection
// ---------------------------------------------------------------------------

/**
 * Decide where an operation goes, from the text actually being sent.
 * (GraphiQL's `documentAST` / operation name can lag a keystroke behind the
 * editor, so the query string is parsed here.) Returns the operation type and
 * the operationName to send: a stale name that is not in the document is
 * dropped when the document has a single operation.
 */
function classify(params) {
  let doc;
  try {
    doc = parse(params.query);
  } catch {
    // Let the server report the syntax error.
    return { type: 'query', operationName: params.operationName || undefined };
  }
  const ops = doc.definitions.filter((d) => d.kind === 'OperationDefinition');
  let op = params.operationName
    ? ops.find((d) => d.name && d.name.value === params.operationName)
    : undefined;
  let operationName = params.operationName || undefined;
  if (!op && ops.length === 1) {
    op = ops[0];
    operationName = op.name ? op.name.value : undefined;
  }
  return { type: op ? op.operation : 'query', operationName };
}

// ---------------------------------------------------------------------------
// HTTP (queries, mutations, introspection)
// ---------------------------------------------------------------------------

async function httpFetch(params, headers) {
  const body = { query: params.query };
  if (params.variables !== undefined && params.variables !== null) {
    body.variables = params.variables;
  }
  if (params.operationName) body.operationName = params.operationName;

  const res = await fetch(HTTP_URL, {
    method: 'POST',
    credentials: 'same-origin',
    headers: {
      Accept: 'application/graphql-response+json, application/json',
      'Content-Type': 'application/json',
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    // Not a GraphQL response (e.g. a plain-text 401 from an auth layer).
    return {
      errors: [
        {
          message:
            `HTTP ${res.status} ${res.statusText}` +
            (text ? `: ${text.slice(0, 2000)}` : ''),
        },
      ],
    };
  }
}

// ---------------------------------------------------------------------------
// WebSocket (subscriptions): one lazy graphql-ws client per distinct headers
// ---------------------------------------------------------------------------

const wsClients = new Map(); // key (JSON of sorted headers) -> { client, active }

// Turn whatever graphql-ws reports into what GraphiQL shows: a GraphQLError[]
// (from an `error` message) is kept; anything else becomes `{ message }`
// (a plain object, so GraphiQL prints no JS stack trace).
function describeWsError(err) {
  if (Array.isArray(err)) return err;
  if (err instanceof Error) return { message: err.message };
  if (err && typeof err === 'object' && 'code' in err) {
    // CloseEvent: 4403 = forbidden (server rejected connection_init),
    // 1006 = could not connect / connection dropped.
    return {
      message: `WebSocket ${WS_URL} closed (${err.code}${err.reason ? `: ${err.reason}` : ''})`,
    };
  }
  if (err && typeof err === 'object' && err.type === 'error') {
    return { message: `WebSocket error: could not connect to ${WS_URL}` };
  }
  return { message: String(err) };
}

function wsEntryFor(headers) {
  const key = JSON.stringify(Object.keys(headers).sort().map((k) => [k, headers[k]]));
  let entry = wsClients.get(key);
  if (entry) return entry;

  // Headers changed (e.g. a new token): drop idle clients of old headers.
  for (const [oldKey, old] of wsClients) {
    if (old.active === 0) {
      old.client.dispose();
      wsClients.delete(oldKey);
    }
  }

  const connectionParams = { ...headers }; // -> connection_init payload
  entry = {
    active: 0,
    client: createClient({
      url: WS_URL,
      lazy: true, // connect on first subscribe, close when none are left
      keepAlive: 10000, // ping every 10 s
      connectionParams,
      // Retry dropped connections twice, but not an auth rejection (4401 is
      // never retried by graphql-ws; 4403 would be, pointlessly).
      retryAttempts: 2,
      shouldRetry: (e) =>
        !!e && typeof e === 'object' && 'code' in e && 'reason' in e && e.code !== 4403,
    }),
  };
  wsClients.set(key, entry);
  return entry;
}

function wsSubscribe(params, headers) {
  const payload = { query: params.query };
  if (params.variables !== undefined && params.variables !== null) {
    payload.variables = params.variables;
  }
  if (params.operationName) payload.operationName = params.operationName;

  // An Observable as GraphiQL expects: every `next` is rendered as it arrives.
  return {
    subscribe(observerOrNext, maybeError, maybeComplete) {
      const observer =
        typeof observerOrNext === 'function'
          ? { next: observerOrNext, error: maybeError, complete: maybeComplete }
          : observerOrNext;
      const entry = wsEntryFor(headers);
      entry.active += 1;
      let done = false;
      const finish = () => {
        if (!done) {
          done = true;
          entry.active -= 1;
        }
      };
      const dispose = entry.client.subscribe(payload, {
        next: (result) => observer.next && observer.next(result),
        error: (err) => {
          finish();
          const e = describeWsError(err);
          if (Array.isArray(e)) {
            observer.next && observer.next({ errors: e });
            observer.complete && observer.complete();
          } else {
            observer.error && observer.error(e);
          }
        },
        complete: () => {
          finish();
          observer.complete && observer.complete();
        },
      });
      return {
        unsubscribe() {
          finish();
          dispose();
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------
// The fetcher handed to GraphiQL
// ---------------------------------------------------------------------------

function fetcher(graphQLParams, fetcherOpts = {}) {
  const headers = normaliseHeaders(fetcherOpts.headers);
  const { type, operationName } = classify(graphQLParams);
  const params = { ...graphQLParams, operationName };
  if (type === 'subscription') return wsSubscribe(params, headers);
  return httpFetch(params, headers);
}

// ---------------------------------------------------------------------------
// Storage: localStorage, but never with headers in it.
//
// `shouldPersistHeaders={false}` keeps headers out of the tab state, but the
// history plugin stores each run's headers in `graphiql:queries` /
// `graphiql:favorites` regardless. This wrapper nulls every `headers` field
// before anything is written, so a pasted JWT never reaches disk.
// ---------------------------------------------------------------------------

const NS = 'graphiql:';

function scrubHeaders(value) {
  if (typeof value !== 'string') return value;
  const c = value.trimStart()[0];
  if (c !== '{' && c !== '[') return value;
  try {
    return JSON.stringify(JSON.parse(value), (k, v) => (k === 'headers' ? null : v));
  } catch {
    return value;
  }
}

function makeStorage() {
  let ls;
  try {
    ls = window.localStorage;
    ls.getItem(NS + 'probe');
  } catch {
    return null; // storage disabled: GraphiQL then keeps everything in memory
  }
  // Remove anything an older, unscrubbed version may have left behind.
  try {
    ls.removeItem(NS + 'headers');
    for (const k of ['queries', 'favorites', 'tabState']) {
      const v = ls.getItem(NS + k);
      if (v) ls.setItem(NS + k, scrubHeaders(v));
    }
  } catch {
    /* ignore */
  }
  return {
    getItem: (key) => ls.getItem(key),
    setItem: (key, value) => {
      if (key === NS + 'headers') return; // never persist raw headers
      ls.setItem(key, scrubHeaders(value));
    },
    removeItem: (key) => ls.removeItem(key),
    get length() {
      let n = 0;
      for (let i = 0; i < ls.length; i++) if (ls.key(i).startsWith(NS)) n++;
      return n;
    },
    clear() {
      const keys = [];
      for (let i = 0; i < ls.length; i++) keys.push(ls.key(i));
      for (const k of keys) if (k.startsWith(NS)) ls.removeItem(k);
    },
  };
}

// ---------------------------------------------------------------------------
// Mount
// ---------------------------------------------------------------------------

const storage = makeStorage();

function App() {
  return (
    <GraphiQL
      fetcher={fetcher}
      storage={storage}
      defaultQuery={DEFAULT_QUERY}
      defaultHeaders={DEFAULT_HEADERS}
      isHeadersEditorEnabled={true}
      shouldPersistHeaders={false}
      showPersistHeadersSettings={false}
      defaultEditorToolsVisibility="headers"
    />
  );
}

createRoot(document.getElementById('graphiql')).render(<App />);
