// A tar writer for image layers and OCI archives: ustar headers, with a PAX
// record for paths longer than ustar holds. Every entry has a fixed mtime and
// explicit owner, so the same files always give the same layer digest.

export interface TarEntry {
  /** Path inside the archive, without a leading slash. */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  uid?: number;
  gid?: number;
  data?: Buffer;
  /** The target of a symlink. */
  linkname?: string;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(fields: {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  typeflag: string;
  linkname: string;
}): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(fields.name, 0, 100, 'utf8');
  block.write(octal(fields.mode & 0o7777, 8), 100, 8, 'ascii');
  block.write(octal(fields.uid, 8), 108, 8, 'ascii');
  block.write(octal(fields.gid, 8), 116, 8, 'ascii');
  block.write(octal(fields.size, 12), 124, 12, 'ascii');
  block.write(octal(0, 12), 136, 12, 'ascii');
  block.write('        ', 148, 8, 'ascii');
  block.write(fields.typeflag, 156, 1, 'ascii');
  block.write(fields.linkname, 157, 100, 'utf8');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return block;
}

function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** One PAX record: "<length> <key>=<value>\n", where length counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length += 1;
  return `${length}${body}`;
}

/** The archive's bytes: entries in the order given, then two zero blocks. */
export function tarArchive(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const name = entry.type === 'dir' && !entry.path.endsWith('/') ? `${entry.path}/` : entry.path;
    const linkname = entry.linkname ?? '';
    const data = entry.type === 'file' ? (entry.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const pax: string[] = [];
    if (Buffer.byteLength(name) > 100) pax.push(paxRecord('path', name));
    if (Buffer.byteLength(linkname) > 100) pax.push(paxRecord('linkpath', linkname));
    if (pax.length > 0) {
      const body = Buffer.from(pax.join(''));
      parts.push(
        header({
          name: 'PaxHeader',
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: body.length,
          typeflag: 'x',
          linkname: '',
        }),
        body,
        padding(body.length),
      );
    }
    parts.push(
      header({
        name: name.slice(0, 100),
        mode: entry.mode,
        uid: entry.uid ?? 0,
        gid: entry.gid ?? 0,
        size: data.length,
        typeflag: entry.type === 'file' ? '0' : entry.type === 'dir' ? '5' : '2',
        linkname: linkname.slice(0, 100),
      }),
      data,
      padding(data.length),
    );
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
