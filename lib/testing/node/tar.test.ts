import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TarEntry, tarArchive } from './tar.ts';

const longPath = `app/node_modules/${'a-package-with-a-long-name/'.repeat(6)}index.js`;

/** GNU tar's listing and extraction of what tarArchive wrote. */
function readBack(entries: TarEntry[]) {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-tar-'));
  try {
    const archive = join(dir, 'layer.tar');
    writeFileSync(archive, tarArchive(entries));
    const listing = execFileSync('tar', ['-tvf', archive, '--numeric-owner'], { encoding: 'utf8' });
    const root = join(dir, 'root');
    execFileSync('mkdir', [root]);
    execFileSync('tar', ['-xf', archive, '-C', root, '--numeric-owner', '--same-owner']);
    return { listing, root, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

describe('tarArchive', () => {
  it('should write files, directories and symlinks that GNU tar reads back with their modes and owners', () => {
    const { listing, root, cleanup } = readBack([
      { path: 'usr/local/bin', type: 'dir', mode: 0o755 },
      { path: 'usr/local/bin/tool', type: 'file', mode: 0o755, data: Buffer.from('#!/bin/true\n') },
      { path: 'usr/local/bin/alias', type: 'symlink', mode: 0o777, linkname: 'tool' },
      { path: 'home/nonroot', type: 'dir', mode: 0o700, uid: 65532, gid: 65532 },
    ]);
    try {
      expect({
        tool: readFileSync(join(root, 'usr/local/bin/tool'), 'utf8'),
        toolMode: statSync(join(root, 'usr/local/bin/tool')).mode & 0o777,
        alias: readlinkSync(join(root, 'usr/local/bin/alias')),
        home: statSync(join(root, 'home/nonroot')).uid,
        listing,
      }).toEqual({
        tool: '#!/bin/true\n',
        toolMode: 0o755,
        alias: 'tool',
        home: 65532,
        listing: expect.stringContaining('drwx------ 65532/65532'),
      });
    } finally {
      cleanup();
    }
  });

  it('should keep paths longer than ustar holds, through a PAX record', () => {
    const { listing, root, cleanup } = readBack([
      { path: longPath, type: 'file', mode: 0o644, data: Buffer.from('module.exports = 1;\n') },
    ]);
    try {
      expect({
        listed: listing.includes(longPath),
        content: readFileSync(join(root, longPath), 'utf8'),
      }).toEqual({
        listed: true,
        content: 'module.exports = 1;\n',
      });
    } finally {
      cleanup();
    }
  });

  it('should give the same bytes for the same entries', () => {
    const entries: TarEntry[] = [{ path: 'a', type: 'file', mode: 0o644, data: Buffer.from('x') }];
    expect(tarArchive(entries).equals(tarArchive(entries))).toBe(true);
  });
});
