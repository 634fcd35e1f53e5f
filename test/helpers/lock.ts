/** A registry lock left behind by a process that was SIGKILLed while holding it. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './cli.js';

/** Start a process that takes the registry lock on `stateFile`, wait until it holds it, SIGKILL it. */
export async function leaveStaleLock(stateFile: string): Promise<void> {
  const holder = spawn(process.execPath, [join(ROOT, 'test/fixtures/hold-registry-lock.mjs'), stateFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    holder.stdout!.on('data', (d) => String(d).includes('locked') && res());
    holder.once('exit', (c) => rej(new Error(`lock holder exited ${c} before taking the lock`)));
  });
  holder.kill('SIGKILL');
  await new Promise((r) => holder.once('exit', r));
}
