// tsc compiles only TypeScript: the Lua scripts travel to dist/ beside the code that loads them.
import { cpSync, existsSync } from 'node:fs';

for (const dir of ['src/core/lua']) {
  if (existsSync(dir)) cpSync(dir, dir.replace(/^src/, 'dist'), { recursive: true });
}
