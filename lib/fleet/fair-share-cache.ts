// Fair-share savings cost a walk of every merging process's page tables (pagemap and
// kpagecount): about 1 ms per MiB merged. Scrapes must stay cheap on big hosts, so
// the exporter computes them in the background and every scrape serves the latest.
import { fairShareSaved, type FairShare } from '../process/fair-share.js';
import { scanKsmProcesses, type ScannedProcess } from './process-scan.js';

/** A process with no KSM page and no zero page saves nothing: only the others are walked. */
export function holdsKsmPages(entry: ScannedProcess): boolean {
  return entry.mergingBytes > 0 || (entry.zeroPages ?? 0) > 0;
}

export class FairShareCache {
  private result: FairShare = { available: false, reason: 'not computed yet' };
  /** ms since the epoch of the last computation, 0 before the first. */
  private computedAt = 0;
  private lastDurationSeconds = 0;

  /** Walks the page tables of every process that holds KSM pages now. */
  refresh(): void {
    const start = performance.now();
    const holders = scanKsmProcesses().processes.filter(holdsKsmPages);
    try {
      this.result = fairShareSaved(holders.map((entry) => entry.pid));
    } catch (error) {
      // A background failure must not end the exporter: the figures go, with the reason.
      this.result = { available: false, reason: error instanceof Error ? error.message : String(error) };
    }
    this.computedAt = Date.now();
    this.lastDurationSeconds = (performance.now() - start) / 1000;
  }

  /** The process's saving as of the last computation: 0 without KSM pages, undefined when not computed for it. */
  savedBytes(entry: ScannedProcess): number | undefined {
    if (!this.result.available) return undefined;
    return this.result.savedBytes.get(entry.pid) ?? (holdsKsmPages(entry) ? undefined : 0);
  }

  status(): { available: true; totalSavedBytes: number; ageSeconds: number; durationSeconds: number } | { available: false; reason: string } {
    if (!this.result.available) return { available: false, reason: this.result.reason };
    return { available: true, totalSavedBytes: this.result.totalSavedBytes, ageSeconds: (Date.now() - this.computedAt) / 1000, durationSeconds: this.lastDurationSeconds };
  }
}
