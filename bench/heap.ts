// What a V8 heap snapshot says the operator holds: the total, the largest kinds of object by
// their own size, and, by dominator (what would be freed with it), each controller, informer,
// queue, metrics registry and module-level map with the fields that hold the most. Reads a
// .heapsnapshot file as Node writes it (--heapsnapshot-signal, v8.writeHeapSnapshot).
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: {
    meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

const MiB = (bytes: number) => (bytes / 2 ** 20).toFixed(2).padStart(7);
/** Constructor names of the objects that own the operator's data. */
const OWNERS = /(Controller|Informer|WorkQueue|EventRecorder|Registry|Elector)$/;

export function summariseHeapSnapshot(file: string, top = 15): string[] {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const { node_fields: nf, edge_fields: ef } = snap.snapshot.meta;
  const nodeTypes = snap.snapshot.meta.node_types[0];
  const edgeTypes = snap.snapshot.meta.edge_types[0];
  const NF = nf.length;
  const EF = ef.length;
  const { nodes, edges, strings } = snap;
  const [typeAt, nameAt, sizeAt, countAt] = ['type', 'name', 'self_size', 'edge_count'].map((f) =>
    nf.indexOf(f),
  );
  const [eTypeAt, eNameAt, eToAt] = ['type', 'name_or_index', 'to_node'].map((f) => ef.indexOf(f));
  const n = nodes.length / NF;
  const firstEdge = new Int32Array(n + 1);
  for (let i = 0, e = 0; i < n; i++) {
    firstEdge[i] = e;
    e += nodes[i * NF + countAt!]! * EF;
  }
  firstEdge[n] = edges.length;
  const strong = (k: number) => !['weak', 'shortcut'].includes(edgeTypes[edges[k + eTypeAt!]!]!);
  const target = (k: number) => edges[k + eToAt!]! / NF;

  // Reverse postorder from the root, then dominators (Cooper, Harvey and Kennedy's iteration).
  const order = new Int32Array(n).fill(-1);
  const post: number[] = [];
  const next = new Int32Array(n);
  const seen = new Uint8Array(n);
  const stack = [0];
  seen[0] = 1;
  next[0] = firstEdge[0]!;
  while (stack.length > 0) {
    const v = stack[stack.length - 1]!;
    let pushed = false;
    while (next[v]! < firstEdge[v + 1]!) {
      const k = next[v]!;
      next[v] = k + EF;
      if (!strong(k)) continue;
      const w = target(k);
      if (seen[w]) continue;
      seen[w] = 1;
      next[w] = firstEdge[w]!;
      stack.push(w);
      pushed = true;
      break;
    }
    if (!pushed) post.push(stack.pop()!);
  }
  const rpo = post.reverse();
  rpo.forEach((v, i) => {
    order[v] = i;
  });
  const preds: number[][] = Array.from({ length: n }, () => []);
  for (const v of rpo)
    for (let k = firstEdge[v]!; k < firstEdge[v + 1]!; k += EF) if (strong(k)) preds[target(k)]!.push(v);
  const idom = new Int32Array(n).fill(-1);
  idom[0] = 0;
  const intersect = (a: number, b: number) => {
    while (a !== b) {
      while (order[a]! > order[b]!) a = idom[a]!;
      while (order[b]! > order[a]!) b = idom[b]!;
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (const v of rpo.slice(1)) {
      let d = -1;
      for (const p of preds[v]!) if (idom[p] !== -1) d = d === -1 ? p : intersect(p, d);
      if (d !== -1 && idom[v] !== d) {
        idom[v] = d;
        changed = true;
      }
    }
  }
  const retained = new Float64Array(n);
  for (const v of rpo) retained[v] = nodes[v * NF + sizeAt!]!;
  for (let i = rpo.length - 1; i > 0; i--) retained[idom[rpo[i]!]!]! += retained[rpo[i]!]!;

  const typeOf = (v: number) => nodeTypes[nodes[v * NF + typeAt!]!]!;
  const nameOf = (v: number) => strings[nodes[v * NF + nameAt!]!]!;
  const edgeName = (k: number) =>
    edgeTypes[edges[k + eTypeAt!]!] === 'element'
      ? `[${edges[k + eNameAt!]}]`
      : strings[edges[k + eNameAt!]!]!;

  // By own size, as before: strings, arrays, object kinds.
  const bySelf = new Map<string, { bytes: number; count: number }>();
  for (let v = 0; v < n; v++) {
    const type = typeOf(v);
    const key = ['object', 'closure', 'native'].includes(type) ? `${type} ${nameOf(v).slice(0, 60)}` : type;
    const e = bySelf.get(key) ?? { bytes: 0, count: 0 };
    e.bytes += nodes[v * NF + sizeAt!]!;
    e.count++;
    bySelf.set(key, e);
  }
  const lines = [
    `heap snapshot ${file}: ${MiB(retained[0]!).trim()} MiB reachable`,
    'largest kinds, by their own size:',
    ...[...bySelf.entries()]
      .sort((a, b) => b[1].bytes - a[1].bytes)
      .slice(0, top)
      .map(([k, e]) => `${MiB(e.bytes)} MiB ${String(e.count).padStart(8)}  ${k}`),
    'what holds it, by retained size (freed with it), and its largest fields:',
  ];
  /** The string at a path of properties from v (an informer's options.name), if there is one. */
  const stringAt = (v: number, path: string[]): string | undefined => {
    let at = v;
    for (const name of path) {
      let found = -1;
      for (let k = firstEdge[at]!; k < firstEdge[at + 1]!; k += EF)
        if (edgeTypes[edges[k + eTypeAt!]!] === 'property' && strings[edges[k + eNameAt!]!] === name)
          found = target(k);
      if (found < 0) return undefined;
      at = found;
    }
    return typeOf(at).includes('string') ? nameOf(at) : undefined;
  };
  // Owners: the controllers and their parts, and module-level variables (closure contexts) over 100 KiB.
  const owners: { v: number; label: string }[] = [];
  for (let v = 0; v < n; v++) {
    if (!seen[v]) continue;
    const type = typeOf(v);
    if (type === 'object' && OWNERS.test(nameOf(v)) && retained[v]! > 20 * 1024)
      owners.push({ v, label: [nameOf(v), stringAt(v, ['options', 'name'])].filter(Boolean).join(' ') });
    else if (nameOf(v) === 'system / Context')
      for (let k = firstEdge[v]!; k < firstEdge[v + 1]!; k += EF) {
        const w = target(k);
        if (idom[w] === v && retained[w]! > 100 * 1024 && edgeTypes[edges[k + eTypeAt!]!] === 'context')
          owners.push({ v: w, label: `module variable ${edgeName(k)} (${nameOf(w)})` });
      }
  }
  for (const { v, label } of owners.sort((a, b) => retained[b.v]! - retained[a.v]!).slice(0, top)) {
    lines.push(`${MiB(retained[v]!)} MiB  ${label}`);
    const fields: [string, number][] = [];
    for (let k = firstEdge[v]!; k < firstEdge[v + 1]!; k += EF)
      if (idom[target(k)] === v && retained[target(k)]! > 20 * 1024)
        fields.push([edgeName(k), retained[target(k)]!]);
    for (const [name, bytes] of fields.sort((a, b) => b[1] - a[1]).slice(0, 6))
      lines.push(`${MiB(bytes)} MiB    .${name}`);
  }
  return lines;
}
