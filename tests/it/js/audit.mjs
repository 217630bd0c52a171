// Runs graphql-http's GraphQL-over-HTTP server audits against CURBPAY_URL and prints
// one JSON line: {"ok": n, "notice": n, "warn": n, "error": n, "failures": [...]}.
import { auditServer } from 'graphql-http';

const url = process.env.CURBPAY_URL;
if (!url) {
  console.error('CURBPAY_URL is required');
  process.exit(4);
}
const results = await auditServer({ url });
const summary = { ok: 0, notice: 0, warn: 0, error: 0, failures: [] };
for (const result of results) {
  summary[result.status] += 1;
  if (result.status !== 'ok') {
    summary.failures.push({ id: result.id, status: result.status, name: result.name, reason: result.reason });
  }
}
console.log(JSON.stringify(summary));
