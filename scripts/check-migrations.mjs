// CI check: the committed migrations match src/store/schema.ts. drizzle-kit generates into a
// scratch copy of the migrations folder; any new file there means `npm run db:generate` was forgotten.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const committed = 'src/store/migrations';
const scratch = mkdtempSync(join(tmpdir(), 'interchange-migrations-'));
try {
  cpSync(committed, scratch, { recursive: true });
  execFileSync(
    'npx',
    [
      'drizzle-kit',
      'generate',
      '--dialect',
      'postgresql',
      '--schema',
      'src/store/schema.ts',
      '--out',
      scratch,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const before = new Set(readdirSync(committed));
  const added = readdirSync(scratch).filter((f) => !before.has(f));
  if (added.length > 0) {
    console.error(
      `schema.ts has changes without a migration (would add ${added.join(', ')}): run npm run db:generate`,
    );
    process.exit(1);
  }
  console.log('migrations match the schema');
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
