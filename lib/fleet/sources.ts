import { identifyCgroup } from '../process/cgroups.js';
import { fairShareSaved } from '../process/fair-share.js';
import type { SnapshotSources } from './snapshot.js';

/** Where the exporter gets fair-share savings and container names outside tests. */
export const defaultSources: SnapshotSources = {
  fairShareSaved,
  identifyCgroup: (path) => identifyCgroup(path),
};
