// tsc compiles only TypeScript: Lua scripts and the demo page travel to dist/ beside the code that loads them.
import { cpSync, existsSync } from 'node:fs';

for (const dir of ['src/core/lua', 'src/demo/index.html']) {
  if (existsSync(dir)) cpSync(dir, dir.replace(/^src/, 'dist'), { recursive: true });
}
