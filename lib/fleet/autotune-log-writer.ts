// Appends autotune's decisions to the state file the dashboard reads
// (autotune-log.ts), one JSON object per line, and keeps the file short.
import { appendFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { KsmError } from '../core/errors.js';
import type { AutotuneDecision } from './autotune-log.js';

/** The file is cut back to KEEP_LINES once it passes MAX_LINES, so it never grows without bound. */
const MAX_LINES = 1000;
const KEEP_LINES = 500;

export class AutotuneLogWriter {
  private lines: number;

  constructor(readonly file: string) {
    try {
      mkdirSync(dirname(file), { recursive: true });
    } catch (error) {
      throw KsmError.fromNode('runAutotune', error, `cannot create the folder of ${file}: ${(error as Error).message}`);
    }
    this.lines = this.read().length;
  }

  append(entry: AutotuneDecision): void {
    try {
      appendFileSync(this.file, `${JSON.stringify(entry)}\n`);
      this.lines++;
      if (this.lines > MAX_LINES) this.truncate();
    } catch (error) {
      throw KsmError.fromNode('runAutotune', error, `cannot write ${this.file}: ${(error as Error).message}`);
    }
  }

  private read(): string[] {
    try {
      return readFileSync(this.file, 'utf8').split('\n').filter((line) => line !== '');
    } catch {
      return [];
    }
  }

  /** Keeps the newest lines; written aside and renamed, so a reader never sees half a file. */
  private truncate(): void {
    const kept = this.read().slice(-KEEP_LINES);
    const temporary = `${this.file}.${process.pid}.tmp`;
    writeFileSync(temporary, kept.map((line) => `${line}\n`).join(''));
    renameSync(temporary, this.file);
    this.lines = kept.length;
  }
}
