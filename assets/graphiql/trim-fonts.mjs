// Post-build step: GraphiQL's stylesheet inlines 34 @font-face rules
// (Roboto 400/500 normal+italic and Fira Code, each in 7 unicode subsets) as
// base64 data URLs, ~360 KB. Keep only the upright Latin-1 subset of each
// (what the English UI and ASCII GraphQL actually use); other scripts and
// italics fall back to the system sans-serif / monospace fonts.
import { readFileSync, writeFileSync } from 'node:fs';

const file = process.argv[2];
const css = readFileSync(file, 'utf8');
let kept = 0;
let dropped = 0;
const out = css.replace(/@font-face\{[^}]*\}/g, (rule) => {
  const upright = /font-style:\s*normal/.test(rule);
  const latin1 = /unicode-range:\s*U\+0000-00FF/i.test(rule);
  if (upright && latin1) {
    kept++;
    return rule;
  }
  dropped++;
  return '';
});
if (kept === 0) throw new Error(`${file}: no @font-face kept; stylesheet format changed?`);
writeFileSync(file, out);
console.log(`${file}: kept ${kept} @font-face rules, dropped ${dropped}; ${css.length} -> ${out.length} bytes`);
