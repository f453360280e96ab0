import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { KsmError } from '../core/errors.js';
import { quoteShell } from '../deploy/quote.js';
import { ksmSysfsRoot } from './sysfs.js';
import { KSM_KNOBS, validateKnobs, type KnobChanges, type KsmKnob } from './tune.js';

/** How settings survive a reboot: a systemd-tmpfiles entry, or lines in /etc/rc.local. */
export type PersistMechanism = 'tmpfiles' | 'rc.local';

/** What persistKnobs() wrote. */
export interface PersistResult {
  mechanism: PersistMechanism;
  file: string;
  /** The whole file as written. */
  text: string;
}

const TMPFILES_FILE = 'etc/tmpfiles.d/ksm-preload.conf';
const RC_LOCAL_FILE = 'etc/rc.local';
const BLOCK_BEGIN = '# ksm-preload begin: KSM settings for boot, written by `ksm tune --persist`';
const BLOCK_END = '# ksm-preload end';

/** Prefix of /etc and /run. KSM_PERSIST_ROOT replaces `/` for tests, which must not touch the host's /etc. */
function persistRoot(): string {
  return process.env.KSM_PERSIST_ROOT || '/';
}

/** tmpfiles where systemd is the running init (as sd_booted() decides), rc.local elsewhere. */
export function persistMechanism(): PersistMechanism {
  return existsSync(join(persistRoot(), 'run/systemd/system')) ? 'tmpfiles' : 'rc.local';
}

/** The boot-time lines that set `knobs`, run last so ksmd starts tuned. */
export function bootLines(knobs: ReadonlyMap<KsmKnob, string>, mechanism: PersistMechanism): string[] {
  const ordered = [...KSM_KNOBS.filter((knob) => knob !== 'run'), 'run' as const].filter((knob) => knobs.has(knob));
  return ordered.map((knob) => {
    const file = join(ksmSysfsRoot(), knob);
    const value = knobs.get(knob) ?? '';
    return mechanism === 'tmpfiles' ? `w ${file} - - - - ${value}` : `echo ${value} > ${quoteShell(file)}`;
  });
}

/**
 * Makes `changes` survive a reboot, merged with what an earlier call persisted:
 * /etc/tmpfiles.d/ksm-preload.conf (`w` lines) on systemd hosts, else a marked
 * block in /etc/rc.local. Never touches anything else. Replaces the file atomically.
 */
export function persistKnobs(changes: KnobChanges, mechanism: PersistMechanism = persistMechanism()): PersistResult {
  const wanted = validateKnobs(changes);
  const file = join(persistRoot(), mechanism === 'tmpfiles' ? TMPFILES_FILE : RC_LOCAL_FILE);
  const existing = readOptional(file);
  const knobs = new Map([...persistedKnobs(existing, mechanism), ...wanted]);
  const text = mechanism === 'tmpfiles' ? tmpfilesText(knobs) : rcLocalText(existing, knobs);
  writeAtomically(file, text, mechanism === 'rc.local' ? 0o755 : 0o644);
  return { mechanism, file, text };
}

function tmpfilesText(knobs: ReadonlyMap<KsmKnob, string>): string {
  return `# KSM settings applied at boot, written by \`ksm tune --persist\` (ksm-preload).\n${bootLines(knobs, 'tmpfiles').join('\n')}\n`;
}

/** Replaces our block, else inserts it before a final `exit 0`, else appends it. */
function rcLocalText(existing: string | undefined, knobs: ReadonlyMap<KsmKnob, string>): string {
  const block = [BLOCK_BEGIN, ...bootLines(knobs, 'rc.local'), BLOCK_END].join('\n');
  const body = existing ?? '#!/bin/sh -e\nexit 0\n';
  const begin = body.indexOf(BLOCK_BEGIN);
  const end = body.indexOf(BLOCK_END);
  if (begin !== -1 && end > begin) return body.slice(0, begin) + block + body.slice(end + BLOCK_END.length);
  const finalExit = /^exit 0\s*$/m.exec(body);
  if (finalExit && body.slice(finalExit.index).trim() === 'exit 0') return `${body.slice(0, finalExit.index)}${block}\n${body.slice(finalExit.index)}`;
  return `${body}${body.endsWith('\n') ? '' : '\n'}${block}\n`;
}

/** The knob values an earlier persistKnobs() left in the file. */
function persistedKnobs(text: string | undefined, mechanism: PersistMechanism): Map<KsmKnob, string> {
  const found = new Map<KsmKnob, string>();
  if (text === undefined) return found;
  // In rc.local only our own block counts; the rest is the administrator's.
  const ours = mechanism === 'tmpfiles' ? text : text.slice(Math.max(0, text.indexOf(BLOCK_BEGIN)), Math.max(0, text.indexOf(BLOCK_END)));
  const line = mechanism === 'tmpfiles' ? /^w \S*\/(\w+) - - - - (\S+)$/gm : /^echo (\S+) > '\S*\/(\w+)'$/gm;
  for (const match of ours.matchAll(line)) {
    const [knob, value] = mechanism === 'tmpfiles' ? [match[1], match[2]] : [match[2], match[1]];
    if ((KSM_KNOBS as readonly string[]).includes(knob ?? '') && value !== undefined) found.set(knob as KsmKnob, value);
  }
  return found;
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function writeAtomically(file: string, text: string, mode: number): void {
  const temporary = `${file}.ksm-preload.tmp`;
  try {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(temporary, text, { mode });
    chmodSync(temporary, mode);
    renameSync(temporary, file);
  } catch (error) {
    const err = error as NodeJS.ErrnoException;
    const hint = err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS' ? ': needs root and a writable /etc' : '';
    throw KsmError.fromNode('persistKnobs', error, `cannot write ${file}${hint} (${err.message})`);
  }
}
