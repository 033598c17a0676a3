// The docs stay true to the repository: every relative link in a Markdown file (README, docs/ and
// the other root pages) reaches a file, and a `#anchor` a heading of it; every variable the config
// reads is in the configuration page and in .env.example; and no page or comment cites a file that
// is not in the repository (the team's design notes outside it).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS } from '../src/config.ts';

const ROOT = resolve(import.meta.dirname, '..');

/** The Markdown pages: those at the root and everything under docs/. */
function markdownFiles(): string[] {
  const root = readdirSync(ROOT).filter((name) => name.endsWith('.md'));
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return walk(path);
      return name.endsWith('.md') ? [path] : [];
    });
  return [...root.map((name) => join(ROOT, name)), ...walk(join(ROOT, 'docs'))];
}

/** The text outside fenced code blocks, line by line (a `#` in a bash block is no heading). */
function proseLines(text: string): string[] {
  let fenced = false;
  return text.split('\n').filter((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      return false;
    }
    return !fenced;
  });
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Every anchor a page has, duplicates numbered as GitHub numbers them (`-1`, `-2`…). */
function anchorsOf(path: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const line of proseLines(readFileSync(path, 'utf8'))) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** `[text](target)` links of a page, outside code, that point into the repository. */
function relativeLinks(path: string): string[] {
  const prose = proseLines(readFileSync(path, 'utf8'))
    .join('\n')
    .replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((m) => m[1] as string)
    .filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** Files outside the repository that pages and comments once cited; what they said is in docs/ now. */
const OUTSIDE = /\b(ARCHITECTURE|PROVIDERS|SYNC-PROVIDERS|CONVENTIONS)\.md\b|ARCHITECTURE\s§|\.\.\/shared\//;

/** Source and docs files of the repository (what `git ls-files` would list, minus dependencies). */
function projectFiles(): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return walk(path);
      return /\.(ts|mjs|js|md)$/.test(name) ? [path] : [];
    });
  return [
    ...markdownFiles(),
    ...['src', 'test', 'bench', 'scripts', 'sim', 'bin'].flatMap((dir) => walk(join(ROOT, dir))),
  ];
}

describe('docs', () => {
  const files = markdownFiles();

  it('finds the pages it checks', () => {
    const names = files.map((f) => relative(ROOT, f));
    expect(names).toEqual(expect.arrayContaining(['README.md', 'docs/concepts.md', 'docs/security.md']));
  });

  it.each(files.map((f) => [relative(ROOT, f), f]))('%s: every relative link resolves', (_name, file) => {
    const broken: string[] = [];
    for (const link of relativeLinks(file)) {
      const [target = '', anchor] = link.split('#', 2);
      const path = target === '' ? file : resolve(dirname(file), decodeURI(target));
      if (!path.startsWith(ROOT) || !existsSync(path)) {
        broken.push(`${link}: no such file`);
        continue;
      }
      if (anchor !== undefined && path.endsWith('.md') && !anchorsOf(path).has(anchor)) {
        broken.push(`${link}: no heading #${anchor} in ${relative(ROOT, path)}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('cite no file outside the repository', () => {
    const citing = projectFiles().filter((file) => OUTSIDE.test(readFileSync(file, 'utf8')));
    expect(citing.map((file) => relative(ROOT, file))).toEqual([]);
  });

  it('lists every configuration variable in the configuration page and .env.example', () => {
    const page = readFileSync(join(ROOT, 'docs/self-hosting/configuration.md'), 'utf8');
    const example = readFileSync(join(ROOT, '.env.example'), 'utf8');
    const inPage = new Set([...page.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]));
    const inExample = new Set([...example.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]));
    expect(CONFIG_KEYS.filter((key) => !inPage.has(key))).toEqual([]);
    expect(CONFIG_KEYS.filter((key) => !inExample.has(key))).toEqual([]);
    // And nothing documented that the config does not read.
    expect([...inPage].filter((key) => !CONFIG_KEYS.includes(key as string))).toEqual([]);
  });
});
