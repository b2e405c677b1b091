import cliProgress from 'cli-progress';
import type { CliIo } from './output.js';

/**
 * The live progress bar of `jobs follow`, drawn on stderr (a terminal) while the job's output
 * goes to stdout. When both are the same terminal, the bar steps aside for output: it is
 * cleared before a chunk is written and drawn again only once the output ends a line, so it
 * never lands in the middle of the job's text.
 */
export class ProgressView {
  private readonly bar: cliProgress.SingleBar;
  private shown = false;
  private value = 0;
  private label = 'queued';
  /** Whether the job's output on stdout ends a line (the bar may be drawn below it). */
  private atLineStart = true;

  constructor(private readonly io: CliIo) {
    this.bar = new cliProgress.SingleBar(
      {
        stream: io.stderr,
        format: '{bar} {percentage}% | {label}',
        clearOnComplete: true,
        hideCursor: false,
        // followJob handles Ctrl-C itself (cli-progress's handler would keep the process alive).
        gracefulExit: false,
        barsize: 30,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  /** Whether stdout writes to the same terminal as the bar. */
  private get sharesTerminal(): boolean {
    return this.io.stdout.isTTY === true;
  }

  setState(label: string): void {
    this.label = label;
    this.redraw();
  }

  /** A number is a percentage; anything else (an object, a text) is shown as the label. */
  setProgress(progress: unknown): void {
    if (typeof progress === 'number' && Number.isFinite(progress)) this.value = Math.max(0, Math.min(100, progress));
    else this.label = typeof progress === 'string' ? progress : JSON.stringify(progress);
    this.redraw();
  }

  /** Writes a chunk of the job's output to stdout, keeping the bar out of its way. */
  writeOutput(text: string): void {
    if (text.length === 0) return;
    if (this.sharesTerminal) this.hide();
    this.io.stdout.write(text);
    this.atLineStart = text.endsWith('\n');
    this.redraw();
  }

  /** A line on stderr (a log line, a retry) above the bar. */
  note(text: string): void {
    this.hide();
    // Output that stopped mid-line on the same terminal would run into the note.
    if (this.sharesTerminal && !this.atLineStart) {
      this.io.stdout.write('\n');
      this.atLineStart = true;
    }
    this.io.stderr.write(`${text}\n`);
    this.redraw();
  }

  stop(): void {
    this.hide();
  }

  private redraw(): void {
    if (this.sharesTerminal && !this.atLineStart) return;
    if (this.shown) {
      this.bar.update(this.value, { label: this.label });
    } else {
      this.bar.start(100, this.value, { label: this.label });
      this.shown = true;
    }
  }

  private hide(): void {
    if (!this.shown) return;
    this.bar.stop();
    this.shown = false;
  }
}
