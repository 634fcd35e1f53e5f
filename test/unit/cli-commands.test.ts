// The CLI's commands as declarations (src/cli/commands/index.ts): each declaration builds the command it names, with
// its summary; no command declares the global flags again (--json and --yes are declared once, on the program); and
// the command a command line runs is found without building any (so a run loads one command module).
import { describe, expect, it } from 'vitest';
import { COMMANDS, invokedCommand } from '../../src/cli/commands/index.js';

describe('CLI command declarations', () => {
  it('each declaration builds its command, described by its summary, without its own --json, --yes or -y', async () => {
    expect(COMMANDS.map((c) => c.name)).toEqual(['start', 'request', 'stop', 'ls', 'discover', 'prune', 'logs', 'archs', 'tunnel', 'gateway']);
    for (const d of COMMANDS) {
      const cmd = await d.load();
      expect(cmd.name()).toBe(d.name);
      expect(cmd.description()).toBe(d.summary);
      const flags = cmd.options.flatMap((o) => [o.long, o.short]).filter(Boolean);
      expect(flags, d.name).not.toContain('--json');
      expect(flags, d.name).not.toContain('--yes');
      expect(flags, d.name).not.toContain('-y');
      // The usage in the top-level listing is the command's own.
      expect(cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`)).join(' '), d.name).toBe(d.args);
    }
  });

  it('finds the command a command line runs, also after global flags and for help <command>', () => {
    expect(invokedCommand(['ls', '--json'])).toBe('ls');
    expect(invokedCommand(['--json', '-y', 'stop', 'abcd'])).toBe('stop');
    expect(invokedCommand(['help', 'start'])).toBe('start');
    expect(invokedCommand(['--help'])).toBeUndefined();
    expect(invokedCommand(['-V'])).toBeUndefined();
    expect(invokedCommand(['lss'])).toBeUndefined();
    expect(invokedCommand([])).toBeUndefined();
  });
});
