// CI check: the committed migrations match src/store/schema.ts. drizzle-kit generates into a
// scratch copy of the migrations folder; any new file there means `npm run db:generate` was forgotten.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const committed = 'src/store/migrations';
const scratch = mkdtempSync(join(tmpdir(), 'interchange-migrations-'));
try {
  cpSync(committed, scratch, { recursive: true });
  // drizzle-kit prefixes `--out` with `./`, so it must be relative; and it can print an error yet
  // exit 0, so its output is checked too: this check must be able to fail.
  const result = spawnSync(
    'npx',
    [
      'drizzle-kit',
      'generate',
      '--dialect',
      'postgresql',
      '--schema',
      'src/store/schema.ts',
      '--out',
      relative(process.cwd(), scratch),
    ],
    { encoding: 'utf8' },
  );
  const output = `${result.stdout}${result.stderr}`;
  if (result.status !== 0 || /\bError\b/.test(output)) {
    console.error(output);
    console.error('drizzle-kit generate failed: the migrations could not be checked');
    process.exit(1);
  }
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
