// Every container snippet of `ksm snippet`, run by its real consumer: the Dockerfile
// lines by `podman build`, the docker-run flags by `podman run`, the Kubernetes env by
// `podman kube play`, the compose fragment by `podman-compose`. Each starts two
// containers of the same seeded workload; the test proves from the kernel that the
// program in each is marked (smaps `mg`, ksm_stat) and that ksmd merges their memory
// across the two containers (each one's merged pages exceed what it could merge alone:
// the workload's blobs are random within a process and identical between processes).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { ensureBaseImage, podman, podmanEnv, podmanUnavailable } from '../../scripts/containers/images.mjs';
import { requireTool } from '../helpers/tools.js';
import {
  BUILT_LIBRARY,
  IMAGE_LIBRARY,
  NODE_IN_CONTAINER,
  PACKAGE_IN_CONTAINER,
  REPO,
  WORKER,
  buildContext,
  expectMarked,
  expectMergedAcross,
  ksm,
  packageMounts,
  removeContainers,
  requireContainers,
  uniqueName,
} from './support.js';

const BUILD_TIMEOUT = 15 * 60_000;
const TEST_TIMEOUT = 12 * 60_000;

let base = '';
const containers: string[] = [];
const cleanups: Array<() => void> = [];

beforeAll(async () => {
  if (podmanUnavailable() !== undefined) return;
  base = await ensureBaseImage();
}, BUILD_TIMEOUT);

afterAll(() => {
  removeContainers(containers);
  for (const cleanup of cleanups.reverse()) cleanup();
});

describe('container snippets in real podman containers', () => {
  it('Dockerfile: `podman build` with the docker snippet, library and launcher copied into the image', async (ctx) => {
    requireContainers(ctx);
    const context = buildContext();
    cleanups.push(context.remove);
    const snippet = ksm(['snippet', 'docker', '--lib', IMAGE_LIBRARY]);
    writeFileSync(
      join(context.dir, 'Containerfile'),
      [`FROM ${base}`, `COPY libksm_preload.so ${IMAGE_LIBRARY}`, 'COPY ksm-exec /usr/local/bin/ksm-exec', snippet].join('\n'),
    );
    const image = `localhost/${uniqueName('dockerfile')}`;
    podman(['build', '--layers=false', '-t', image, context.dir]);
    cleanups.push(() => podman(['rmi', '--force', image], { allowFailure: true }));
    expect(podman(['image', 'inspect', '--format', '{{json .Config.Env}}', image])).toContain(`LD_PRELOAD=${IMAGE_LIBRARY}`);
    const names = [uniqueName('dockerfile-a'), uniqueName('dockerfile-b')];
    containers.push(...names);
    for (const name of names) podman(['run', '-d', '--name', name, ...packageMounts(), image, ...WORKER]);
    const pids = [];
    for (const name of names) pids.push(await expectMarked(name, 'prctl', IMAGE_LIBRARY));
    // The launcher copied in beside it runs a program unprivileged with the flag set.
    const launched = podman(['run', '--rm', '--user', '65534', image, '/usr/local/bin/ksm-exec', '--', 'cat', '/proc/self/ksm_stat']);
    expect(launched).toMatch(/ksm_merge_any: yes/);
    await expectMergedAcross(pids);
  }, TEST_TIMEOUT);

  it('docker-run: the flags of the snippet, run by `podman run` (madvise mode)', async (ctx) => {
    requireContainers(ctx);
    // The snippet bind-mounts the library at the path it has on the host.
    const snippet = ksm(['snippet', 'docker-run', '--lib', BUILT_LIBRARY, '--mode', 'madvise']);
    const names = [uniqueName('run-a'), uniqueName('run-b')];
    containers.push(...names);
    for (const name of names) {
      const command = snippet
        .split('\n')
        .filter((line) => !line.startsWith('#'))
        .join('\n')
        .replace(/^docker run/m, `podman run -d --name ${name} ${packageMounts().join(' ')}`)
        .replace(/^ {2}IMAGE$/m, `  ${base} ${WORKER.join(' ')}`);
      const result = spawnSync('sh', ['-c', command], { env: podmanEnv(), encoding: 'utf8' });
      expect(result.status, `${command}\n${result.stderr}`).toBe(0);
    }
    const pids = [];
    for (const name of names) pids.push(await expectMarked(name, 'madvise', BUILT_LIBRARY));
    await expectMergedAcross(pids);
  }, TEST_TIMEOUT);

  it('Kubernetes: the env of the k8s snippet in pods started by `podman kube play`', async (ctx) => {
    requireContainers(ctx);
    const env = parse(ksm(['snippet', 'k8s', '--lib', IMAGE_LIBRARY])).env as Array<{ name: string; value: string }>;
    const pods = [uniqueName('pod-a'), uniqueName('pod-b')];
    const hostPaths = [
      ['library', BUILT_LIBRARY, IMAGE_LIBRARY],
      ['node', process.execPath, NODE_IN_CONTAINER],
      ['package', REPO, PACKAGE_IN_CONTAINER],
    ] as const;
    const manifest = pods
      .map((pod) =>
        stringify({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: pod },
          spec: {
            restartPolicy: 'Never',
            containers: [
              {
                name: 'worker',
                image: base,
                command: WORKER,
                env,
                volumeMounts: hostPaths.map(([name, , mountPath]) => ({ name, mountPath, readOnly: true })),
              },
            ],
            volumes: hostPaths.map(([name, path]) => ({ name, hostPath: { path } })),
          },
        }),
      )
      .join('---\n');
    const context = buildContext();
    cleanups.push(context.remove);
    const file = join(context.dir, 'pods.yaml');
    writeFileSync(file, manifest);
    expect(parseAllDocuments(manifest)).toHaveLength(2);
    cleanups.push(() => podman(['kube', 'down', file], { allowFailure: true }));
    podman(['kube', 'play', file]);
    const names = pods.map((pod) => `${pod}-worker`);
    const pids = [];
    for (const name of names) pids.push(await expectMarked(name, 'prctl', IMAGE_LIBRARY));
    await expectMergedAcross(pids);
  }, TEST_TIMEOUT);

  it('compose: the compose snippet as two services started by `podman-compose up`', async (ctx) => {
    requireContainers(ctx);
    requireTool(ctx, 'podman-compose');
    // The snippet's bind mount takes the library from the host path into the same path.
    const fragment = parse(ksm(['snippet', 'compose', '--lib', BUILT_LIBRARY])) as {
      services: { app: { volumes: object[]; environment: Record<string, string> } };
    };
    const service = {
      ...fragment.services.app,
      image: base,
      command: WORKER,
      volumes: [
        ...fragment.services.app.volumes,
        { type: 'bind', source: process.execPath, target: NODE_IN_CONTAINER, read_only: true },
        { type: 'bind', source: REPO, target: PACKAGE_IN_CONTAINER, read_only: true },
      ],
    };
    const context = buildContext();
    cleanups.push(context.remove);
    const file = join(context.dir, 'docker-compose.yml');
    writeFileSync(file, stringify({ services: { a: service, b: service } }));
    const project = uniqueName('compose').replace(/-/g, '');
    const compose = (args: string[]) => spawnSync('podman-compose', ['-f', file, '-p', project, ...args], { env: podmanEnv(), encoding: 'utf8', timeout: 120_000 });
    cleanups.push(() => compose(['down']));
    const up = compose(['up', '-d']);
    expect(up.status, up.stderr).toBe(0);
    const names = ['a', 'b'].map((service) => `${project}_${service}_1`);
    containers.push(...names);
    const pids = [];
    for (const name of names) pids.push(await expectMarked(name, 'prctl', BUILT_LIBRARY));
    await expectMergedAcross(pids);
  }, TEST_TIMEOUT);
});
