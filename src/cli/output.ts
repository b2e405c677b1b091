import Table from 'cli-table3';
import pc from 'picocolors';
import type { ClientEnv } from '../config/env.js';

/** Where the CLI writes and reads; the real process streams, or others in tests. */
export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
}

export type Colors = ReturnType<typeof pc.createColors>;

/** Colour on a terminal only; NO_COLOR wins over everything, FORCE_COLOR turns it on elsewhere. */
export function colorsFor(stream: { isTTY?: boolean }, env: Pick<ClientEnv, 'noColor' | 'forceColor'>): Colors {
  const enabled = !env.noColor && (env.forceColor || stream.isTTY === true);
  return pc.createColors(enabled);
}

export class Output {
  readonly color: Colors;

  constructor(
    readonly io: CliIo,
    env: Pick<ClientEnv, 'noColor' | 'forceColor'>,
    /** --json: stdout carries JSON only. */
    readonly json: boolean,
  ) {
    this.color = colorsFor(io.stdout, env);
  }

  /** A line for people on stdout (nothing in --json mode, where stdout is for JSON). */
  line(text: string): void {
    if (!this.json) this.io.stdout.write(`${text}\n`);
  }

  /** A note on stderr: progress, counts, warnings. Never mixes with the data on stdout. */
  note(text: string): void {
    this.io.stderr.write(`${text}\n`);
  }

  writeJson(value: unknown): void {
    this.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Rows for people, or `value` as JSON for scripts. */
  table(head: string[], rows: (string | number)[][], value: unknown, empty = 'nothing to show'): void {
    if (this.json) return this.writeJson(value);
    if (rows.length === 0) return this.note(empty);
    const table = new Table({
      head: head.map((title) => this.color.bold(title)),
      // cli-table3 colours the head red by default; the colour choice is ours.
      style: { head: [], border: [], compact: true, 'padding-left': 0, 'padding-right': 0 },
      // No borders: columns like kubectl's, easy to read and to grep.
      chars: BORDERLESS,
    });
    for (const row of rows) table.push(row.map(String));
    const text = table.toString().split('\n').map((row) => row.trimEnd()).join('\n');
    this.io.stdout.write(`${text}\n`);
  }

  /** `key  value` lines for one record, or the record as JSON. */
  record(fields: [string, string][], value: unknown): void {
    if (this.json) return this.writeJson(value);
    const width = Math.max(...fields.map(([key]) => key.length));
    for (const [key, text] of fields) this.io.stdout.write(`${this.color.dim(key.padEnd(width))}  ${text}\n`);
  }

  state(state: string): string {
    switch (state) {
      case 'completed':
      case 'succeeded':
        return this.color.green(state);
      case 'failed':
        return this.color.red(state);
      case 'cancelled':
        return this.color.yellow(state);
      case 'active':
        return this.color.cyan(state);
      default:
        return state;
    }
  }
}

const BORDERLESS = {
  top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
  bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
  left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '   ',
};

/** A timestamp in the user's local time, to the second; '-' for none. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '-';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const pad = (value: number) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** A JSON value on one line, cut to `max` characters for a table cell. */
export function brief(value: unknown, max = 60): string {
  if (value === undefined || value === null) return '-';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
