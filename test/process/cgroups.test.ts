import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { identifyCgroup } from '../../lib/process/cgroups.js';

const root = mkdtempSync(join(tmpdir(), 'ksm-cgroups-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function put(file: string, content: unknown): void {
  mkdirSync(dirname(join(root, file)), { recursive: true });
  writeFileSync(join(root, file), typeof content === 'string' ? content : JSON.stringify(content));
}

const id = (digit: string): string => digit.repeat(64);
const POD_UID = '0d6b3f6e-6f7a-4c1e-9a55-2b8f1b0c7e11';

describe('identifyCgroup: podman', () => {
  put('var/lib/containers/storage/overlay-containers/containers.json', [
    { id: id('a'), names: ['web-1'], metadata: '{"name":"web-1"}' },
    { id: id('b'), names: ['shop-db'], metadata: '{}' },
    { id: id('c'), names: ['cccccccccccc-infra'] },
  ]);
  // The pod record as podman's BoltDB stores it: JSON among binary pages.
  put('var/lib/containers/storage/libpod/bolt_state.db', `\0\u0001binary${'\0'.repeat(40)}{"id":"${id('d')}","name":"shop","namespace":"","config":{}}\0\u0002`);

  it('names a container from storage (cgroupfs)', () => {
    expect(identifyCgroup(`/libpod_parent/libpod-${id('a')}`, { root })).toEqual({
      path: `/libpod_parent/libpod-${id('a')}`,
      engine: 'podman',
      containerId: id('a'),
      container: 'web-1',
      name: 'web-1',
    });
  });

  it('names a container and its pod (cgroupfs and systemd layouts)', () => {
    expect(identifyCgroup(`/libpod_parent/${id('d')}/libpod-${id('b')}`, { root })).toMatchObject({ engine: 'podman', container: 'shop-db', pod: 'shop', name: 'shop-db' });
    expect(identifyCgroup(`/machine.slice/machine-libpod_pod_${id('d')}.slice/libpod-${id('b')}.scope/container`, { root })).toMatchObject({
      engine: 'podman',
      containerId: id('b'),
      container: 'shop-db',
      pod: 'shop',
    });
  });

  it('reads podman 5 SQLite state too', () => {
    const sqliteRoot = mkdtempSync(join(tmpdir(), 'ksm-cgroups-sqlite-'));
    try {
      mkdirSync(join(sqliteRoot, 'var/lib/containers/storage'), { recursive: true });
      writeFileSync(join(sqliteRoot, 'var/lib/containers/storage/db.sql'), `SQLite format 3\0...{"id":"${id('e')}","name":"caf\u00e9 \\"pod\\"","infraConfig":{}}`);
      expect(identifyCgroup(`/libpod_parent/${id('e')}/libpod-${id('f')}`, { root: sqliteRoot })).toMatchObject({ pod: 'café "pod"', name: 'podman ffffffffffff' });
    } finally {
      rmSync(sqliteRoot, { recursive: true, force: true });
    }
  });

  it('follows graphroot in storage.conf', () => {
    const confRoot = mkdtempSync(join(tmpdir(), 'ksm-cgroups-conf-'));
    try {
      mkdirSync(join(confRoot, 'etc/containers'), { recursive: true });
      writeFileSync(join(confRoot, 'etc/containers/storage.conf'), '[storage]\ndriver = "overlay"\ngraphroot = "/srv/podman"\n');
      mkdirSync(join(confRoot, 'srv/podman/overlay-containers'), { recursive: true });
      writeFileSync(join(confRoot, 'srv/podman/overlay-containers/containers.json'), JSON.stringify([{ id: id('a'), names: ['moved'] }]));
      expect(identifyCgroup(`/libpod_parent/libpod-${id('a')}`, { root: confRoot }).name).toBe('moved');
    } finally {
      rmSync(confRoot, { recursive: true, force: true });
    }
  });

  it('finds storage kept anywhere (podman --root) through the conmon of the container', () => {
    const conmonRoot = mkdtempSync(join(tmpdir(), 'ksm-cgroups-conmon-'));
    try {
      const write = (file: string, content: string): void => {
        mkdirSync(dirname(join(conmonRoot, file)), { recursive: true });
        writeFileSync(join(conmonRoot, file), content);
      };
      const conmon = (pid: number, containerId: string, name: string, storage: string): void => {
        write(`proc/${pid}/comm`, 'conmon\n');
        write(`proc/${pid}/cmdline`, ['/usr/bin/conmon', '--api-version', '1', '-c', containerId, '-u', containerId, '-n', name, '-b', `${storage}/overlay-containers/${containerId}/userdata`, ''].join('\0'));
      };
      conmon(41, id('a'), 'from-conmon-a', '/srv/scratch/storage');
      conmon(42, id('b'), 'from-conmon-b', '/elsewhere');
      write('proc/43/comm', 'sleep\n');
      write('proc/43/cmdline', ['sleep', '-c', id('c'), '-n', 'not-a-conmon', ''].join('\0'));
      write('srv/scratch/storage/overlay-containers/containers.json', JSON.stringify([{ id: id('a'), names: ['from-storage'] }]));
      write('srv/scratch/storage/libpod/bolt_state.db', `{"id":"${id('d')}","name":"scratch-pod"}`);
      expect(identifyCgroup(`/libpod_parent/${id('d')}/libpod-${id('a')}`, { root: conmonRoot })).toMatchObject({ container: 'from-storage', pod: 'scratch-pod' });
      expect(identifyCgroup(`/libpod_parent/libpod-${id('b')}`, { root: conmonRoot })).toMatchObject({ container: 'from-conmon-b', name: 'from-conmon-b' });
      expect(identifyCgroup(`/libpod_parent/libpod-${id('c')}`, { root: conmonRoot }).container).toBeUndefined();
    } finally {
      rmSync(conmonRoot, { recursive: true, force: true });
    }
  });

  it('falls back to the engine and short id, and to the pod id', () => {
    expect(identifyCgroup(`/libpod_parent/${id('9')}/libpod-${id('8')}`, { root })).toEqual({
      path: `/libpod_parent/${id('9')}/libpod-${id('8')}`,
      engine: 'podman',
      containerId: id('8'),
      pod: id('9'),
      name: 'podman 888888888888',
    });
  });

  it('rereads storage when it changes', () => {
    const path = `/libpod_parent/libpod-${id('7')}`;
    expect(identifyCgroup(path, { root }).container).toBeUndefined();
    put('var/lib/containers/storage/overlay-containers/containers.json', [{ id: id('7'), names: ['late-starter-with-a-longer-file'] }]);
    expect(identifyCgroup(path, { root }).container).toBe('late-starter-with-a-longer-file');
  });
});

describe('identifyCgroup: docker', () => {
  put(`var/lib/docker/containers/${id('1')}/config.v2.json`, { ID: id('1'), Name: '/redis-cache', Config: {} });

  it('names containers in both cgroup drivers', () => {
    expect(identifyCgroup(`/system.slice/docker-${id('1')}.scope`, { root })).toEqual({
      path: `/system.slice/docker-${id('1')}.scope`,
      engine: 'docker',
      containerId: id('1'),
      container: 'redis-cache',
      name: 'redis-cache',
    });
    expect(identifyCgroup(`/docker/${id('1')}`, { root })).toMatchObject({ engine: 'docker', name: 'redis-cache' });
  });

  it('names an unknown one by short id; malformed metadata is not an error', () => {
    put(`var/lib/docker/containers/${id('2')}/config.v2.json`, '{"Name": "/trunc');
    expect(identifyCgroup(`/docker/${id('2')}`, { root })).toMatchObject({ engine: 'docker', name: 'docker 222222222222' });
    expect(identifyCgroup(`/docker/${id('2')}`, { root }).container).toBeUndefined();
  });
});

describe('identifyCgroup: Kubernetes', () => {
  put(`run/containerd/io.containerd.runtime.v2.task/k8s.io/${id('3')}/config.json`, {
    ociVersion: '1.1.0',
    annotations: {
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.container-name': 'php',
      'io.kubernetes.cri.sandbox-name': 'wiki-7f9c',
      'io.kubernetes.cri.sandbox-namespace': 'tenants',
    },
  });
  put(`run/containers/storage/overlay-containers/${id('4')}/userdata/config.json`, {
    annotations: { 'io.kubernetes.container.name': 'mariadb', 'io.kubernetes.pod.name': 'db-0', 'io.kubernetes.pod.namespace': 'tenants' },
  });
  mkdirSync(join(root, 'var/log/pods', `tenants_cache-5d4_${POD_UID}`, 'redis'), { recursive: true });

  it('containerd under the systemd driver: pod and container from the bundle', () => {
    const path = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${POD_UID.replaceAll('-', '_')}.slice/cri-containerd-${id('3')}.scope`;
    expect(identifyCgroup(path, { root })).toEqual({ path, engine: 'containerd', containerId: id('3'), container: 'php', pod: 'tenants/wiki-7f9c', name: 'tenants/wiki-7f9c/php' });
  });

  it('CRI-O: names from its annotations', () => {
    const path = `/kubepods.slice/kubepods-pod${POD_UID.replaceAll('-', '_')}.slice/crio-${id('4')}.scope`;
    expect(identifyCgroup(path, { root })).toMatchObject({ engine: 'cri-o', container: 'mariadb', pod: 'tenants/db-0', name: 'tenants/db-0/mariadb' });
  });

  it('cgroupfs driver without a readable bundle: the pod from /var/log/pods', () => {
    const path = `/kubepods/besteffort/pod${POD_UID}/${id('5')}`;
    expect(identifyCgroup(path, { root })).toEqual({ path, engine: 'kubernetes', containerId: id('5'), pod: 'tenants/cache-5d4', name: 'tenants/cache-5d4' });
  });

  it('the cgroupfs driver with a containerd bundle is containerd', () => {
    expect(identifyCgroup(`/kubepods/burstable/pod${POD_UID}/${id('3')}`, { root })).toMatchObject({ engine: 'containerd', name: 'tenants/wiki-7f9c/php' });
  });

  it('nothing readable: the pod uid', () => {
    const other = '11111111-2222-3333-4444-555555555555';
    expect(identifyCgroup(`/kubepods/pod${other}`, { root })).toEqual({ path: `/kubepods/pod${other}`, engine: 'kubernetes', pod: other, name: other });
  });
});

describe('identifyCgroup: systemd and plain paths', () => {
  it('names the unit', () => {
    expect(identifyCgroup('/system.slice/mariadb.service', { root })).toEqual({ path: '/system.slice/mariadb.service', engine: 'systemd', name: 'mariadb.service' });
    expect(identifyCgroup('/user.slice/user-1000.slice/session-4.scope', { root })).toMatchObject({ name: 'session-4.scope' });
    expect(identifyCgroup('/machine.slice', { root })).toMatchObject({ engine: 'systemd', name: 'machine.slice' });
  });

  it('leaves other paths as they are', () => {
    expect(identifyCgroup('/', { root })).toEqual({ path: '/', name: '/' });
    expect(identifyCgroup('/tenants/a', { root })).toEqual({ path: '/tenants/a', name: '/tenants/a' });
    expect(identifyCgroup('/libpod_parent/libpod-short', { root })).toEqual({ path: '/libpod_parent/libpod-short', name: '/libpod_parent/libpod-short' });
  });

  it('rejects bad arguments', () => {
    expect(() => identifyCgroup(5 as unknown as string)).toThrow(TypeError);
    expect(() => identifyCgroup('')).toThrow(RangeError);
    expect(() => identifyCgroup('/a', { root: 3 as unknown as string })).toThrow(TypeError);
    expect(() => identifyCgroup('/a', 'x' as unknown as object)).toThrow(TypeError);
    expect(() => identifyCgroup('/a', { rot: '/' } as unknown as object)).toThrow(TypeError);
  });
});
