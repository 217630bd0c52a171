#!/usr/bin/env bash
# Rebuild dist/graphiql.{js,css} from src/ with the exact versions pinned in
# package-lock.json. The Rust build never runs this: dist/ is committed and
# embedded with include_bytes!.
set -euo pipefail
cd "$(dirname "$0")"

npm ci --no-audit --no-fund

rm -rf dist
mkdir -p dist

# One minified IIFE (production React), CSS split out next to it.
npx --no-install esbuild src/main.jsx \
  --bundle \
  --minify \
  --format=iife \
  --platform=browser \
  --target=es2020 \
  --jsx=automatic \
  --charset=utf8 \
  --legal-comments=eof \
  --define:process.env.NODE_ENV='"production"' \
  --define:global=globalThis \
  --outfile=dist/graphiql.js

# Drop the non-Latin / italic subsets of the inlined web fonts (~300 KB).
node trim-fonts.mjs dist/graphiql.css

# The bundle must not fetch anything from the network at run time.
if grep -Eo '(url\((["'\'']?)https?:|@import[^;]*https?:|src=["'\'']https?:|//fonts\.googleapis|//unpkg|//cdn)' dist/graphiql.js dist/graphiql.css; then
  echo "error: dist/ references a remote resource" >&2
  exit 1
fi

ls -l dist
