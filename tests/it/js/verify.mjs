// Verifies recorded webhook deliveries with the official `standardwebhooks` package.
// stdin: JSON [{secret, headers: {"webhook-id", "webhook-timestamp", "webhook-signature"}, body}]
// stdout: JSON [{ok: true, payload} | {ok: false, error}]
import { Webhook } from 'standardwebhooks';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const results = JSON.parse(input).map(({ secret, headers, body }) => {
  try {
    return { ok: true, payload: new Webhook(secret).verify(body, headers) };
  } catch (err) {
    return { ok: false, error: String(err?.message ?? err) };
  }
});
process.stdout.write(JSON.stringify(results));
