import { describe, expect, it } from 'vitest';
import { commands } from '../../lib/cli/main.js';
import { runBin, runInProcess } from './harness.js';

const DATA_COMMANDS = ['status', 'top', 'enable', 'disable', 'tune', 'doctor', 'where', 'install-lib'];

describe('ksm', () => {
  it('without a command prints the overview on stderr and exits 2', async () => {
    const result = await runInProcess([]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^Usage: ksm COMMAND/);
    expect(runBin([]).code).toBe(2);
  });

  it('--help lists every command and exits 0', async () => {
    const result = await runInProcess(['--help']);
    expect(result.code).toBe(0);
    for (const command of commands) expect(result.stdout).toMatch(new RegExp(`^  ${command.name} +\\S`, 'm'));
  });

  it.each(commands.map((command) => command.name))('`ksm %s --help` shows usage and examples', async (name) => {
    const result = await runInProcess([name, '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(new RegExp(`^Usage: ksm ${name}`));
    expect(result.stdout).toMatch(/^Examples?:$/m);
    expect((await runInProcess(['help', name])).stdout).toBe(result.stdout);
  });

  it.each(DATA_COMMANDS)('`ksm %s` documents --json', async (name) => {
    expect((await runInProcess([name, '--help'])).stdout).toMatch(/--json/);
  });

  it('an unknown command is a usage error', async () => {
    const result = await runInProcess(['frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stderr).toBe('ksm: unknown command "frobnicate"\nRun `ksm --help` for the list of commands.\n');
  });

  it('an unknown option is a usage error with a pointer to the command\'s help, in-process and spawned', async () => {
    for (const result of [await runInProcess(['status', '--bogus']), runBin(['status', '--bogus'])]) {
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/^ksm: Unknown option '--bogus'/);
      expect(result.stderr).toMatch(/Run `ksm status --help` for usage\.\n$/);
    }
  });
});
