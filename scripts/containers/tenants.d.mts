// Types of tenants.mjs, for the TypeScript tests.
export type Variant = 'sysv' | 'ksm-run' | 'none';
export const VARIANTS: readonly Variant[];
export const LIBRARY_IN_TENANT: string;
export const PAGES: number;
export interface Tenant {
  name: string;
  port: number;
  memoryDir: string;
}
export function startTenants(options: { image: string; count: number; variant: Variant; repo: string; snippetFile?: string; prefix: string }): Promise<Tenant[]>;
export function stopTenants(tenants: Tenant[]): void;
export function tenantMemory(tenant: Tenant): { bytes: number; anonymousBytes: number };
export function tenantPids(tenant: Tenant): number[];
export function tenantProcesses(tenant: Tenant, command: string): number[];
export interface LoadResult {
  phase: string;
  tenant: string;
  page: number;
  status: number;
  ms: number;
  bytes: number;
  /** pageDigest of the response. */
  digest: string;
}
export interface Load {
  phase(name: string): void;
  results: LoadResult[];
  skipped: Record<string, number>;
  stop(): Promise<void>;
}
export function startLoad(tenants: Tenant[], options?: { rate?: number; maxInFlight?: number; seed?: number }): Load;
export function latencySummary(results: LoadResult[], phase: string): { requests: number; failed: number; p50Ms: number | undefined; p99Ms: number | undefined };
export interface PageView {
  tenant: string;
  page: number;
  status: number;
  digest: string;
}
export function pageDigest(body: Buffer): string;
export function viewPages(tenants: Tenant[], pages: number[], concurrency?: number): Promise<PageView[]>;
export function responseMismatches(reference: PageView[], views: PageView[]): PageView[];
export function loadMismatches(results: LoadResult[]): Array<LoadResult & { reference: LoadResult }>;
