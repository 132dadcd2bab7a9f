// node:http and node:fs for the long-running processes, loaded with require rather
// than `import`. Importing a built-in module as ESM builds its whole namespace,
// which runs every lazy getter the module has: node:http's WebSocket, CloseEvent
// and MessageEvent load undici, http2 and perf_hooks, and node:fs's `promises`
// loads fs/promises. Under Node 24 `import 'node:http'` leaves a process at
// 55.8 MiB resident against 45.3 MiB for require('node:http'), and node:fs at
// 44.2 against 41.7 MiB, for code the operator and the webhook never run.
// Type-only imports of these modules cost nothing and stay as they are.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const http: typeof import('node:http') = require('node:http');
export const fs: typeof import('node:fs') = require('node:fs');
