import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { CliError } from './errors.js';
import type { CliIo } from './output.js';
import { describeFsError } from './profile.js';

/** `--payload '{"a":1}'`, `--payload @file.json`, or `--payload @-` for stdin. */
export async function readJsonArgument(flag: string, text: string, io: CliIo): Promise<unknown> {
  let source = text;
  let origin = flag;
  if (text.startsWith('@')) {
    const file = text.slice(1);
    origin = file === '-' ? `${flag} from stdin` : `${flag} file ${file}`;
    source = file === '-' ? await readAll(io.stdin) : readArgumentFile(flag, file);
  }
  try {
    return JSON.parse(source) as unknown;
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : 'not JSON';
    throw new CliError(`${origin} is not valid JSON (${reason})`, `pass JSON such as '{"to":"a@example.com"}', or @file.json`);
  }
}

function readArgumentFile(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read ${flag} file ${file} (${describeFsError(error)})`, 'check the path; @file reads a file, @- reads stdin');
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
  return text;
}

/** Parsers for commander options: a bad value becomes one clear line naming the flag. */
export function integerOption(flag: string, min: number, max: number): (value: string) => number {
  return (value) => {
    if (!/^-?\d+$/.test(value) || Number(value) < min || Number(value) > max) {
      throw new CliError(`${flag} must be a whole number from ${min} to ${max}, not '${value}'`);
    }
    return Number(value);
  };
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `500`, `500ms`, `30s`, `5m`, `2h`, `1d` → milliseconds. */
export function durationOption(flag: string): (value: string) => number {
  return (value) => {
    const match = /^(\d+)(ms|s|m|h|d)?$/.exec(value.trim());
    if (!match) throw new CliError(`${flag} must be a duration such as 500ms, 30s, 5m or 2h, not '${value}'`);
    return Number(match[1]) * (DURATION_UNITS[match[2] ?? 'ms'] ?? 1);
  };
}

/** Repeatable options (`--tag a --tag b`), also taking comma lists (`--tag a,b`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...value.split(',').map((part) => part.trim()).filter(Boolean)];
}

/** Asks a yes/no question on a terminal; off a terminal there is nobody to ask. */
export async function confirm(io: CliIo, question: string, refusal: string): Promise<boolean> {
  if (io.stdin.isTTY !== true) throw new CliError(refusal, 'pass --yes to go ahead without asking');
  const answer = await ask(io, `${question} [y/N] `);
  return /^y(es)?$/i.test(answer.trim());
}

export async function ask(io: CliIo, question: string): Promise<string> {
  const lines = createInterface({ input: io.stdin, output: io.stderr, terminal: io.stdin.isTTY === true });
  try {
    return await new Promise<string>((resolve) => lines.question(question, resolve));
  } finally {
    lines.close();
  }
}

/** Reads a password on a terminal without echoing it. */
export async function askSecret(io: CliIo, question: string): Promise<string> {
  if (io.stdin.isTTY !== true || !io.stdin.setRawMode) throw new CliError('no password given and not on a terminal to ask for one', 'pass --password');
  io.stderr.write(question);
  io.stdin.setRawMode(true);
  io.stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let secret = '';
      const onData = (chunk: Buffer | string) => {
        for (const character of chunk.toString()) {
          if (character === '\r' || character === '\n' || character === '\u0004') {
            io.stdin.off('data', onData);
            return resolve(secret);
          }
          if (character === '\u0003') {
            io.stdin.off('data', onData);
            return reject(new CliError('cancelled'));
          }
          if (character === '\u007f' || character === '\b') secret = secret.slice(0, -1);
          else secret += character;
        }
      };
      io.stdin.on('data', onData);
    });
  } finally {
    io.stdin.setRawMode(false);
    io.stdin.pause();
    io.stderr.write('\n');
  }
}
