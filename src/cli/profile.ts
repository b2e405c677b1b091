import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { StoredSession } from '../client/index.js';
import { CliError } from './errors.js';

/**
 * Stored profiles: `<configDir>/config.json`, mode 0600 in a 0700 folder, since it holds an API
 * key or a refresh token. Written whole to a temporary file and renamed, so a reader never sees
 * half a file.
 */

export interface Profile {
  url: string;
  apiKey?: string;
  /** The access token is kept too, so a command run within its lifetime needs no refresh. */
  session?: StoredSession;
  /** Who logged in, to show in `jobline whoami` without a request. */
  email?: string;
}

interface ConfigFile {
  profiles: Record<string, Profile>;
}

export const DEFAULT_PROFILE = 'default';

export class ProfileStore {
  readonly file: string;

  constructor(readonly dir: string) {
    this.file = path.join(dir, 'config.json');
  }

  get(name: string): Profile | null {
    return this.read().profiles[name] ?? null;
  }

  save(name: string, profile: Profile): void {
    const config = this.read();
    config.profiles[name] = profile;
    this.write(config);
  }

  /** Re-reads the file before changing it: another command may have written it meanwhile. */
  update(name: string, change: (profile: Profile) => Profile): void {
    const config = this.read();
    const current = config.profiles[name];
    if (!current) return;
    config.profiles[name] = change(current);
    this.write(config);
  }

  remove(name: string): boolean {
    const config = this.read();
    if (!(name in config.profiles)) return false;
    delete config.profiles[name];
    this.write(config);
    return true;
  }

  private read(): ConfigFile {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (error) {
      if (isNotFound(error)) return { profiles: {} };
      throw new CliError(`cannot read ${this.file} (${describeFsError(error)})`, 'check its permissions');
    }
    try {
      const parsed = JSON.parse(text) as Partial<ConfigFile>;
      return { profiles: typeof parsed.profiles === 'object' && parsed.profiles !== null ? parsed.profiles : {} };
    } catch {
      throw new CliError(`${this.file} is not valid JSON`, 'fix it or delete it and run jobline login again');
    }
  }

  private write(config: ConfigFile): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      // mkdir's mode applies only to a folder it creates; an existing one may be looser.
      chmodSync(this.dir, 0o700);
      const temporary = `${this.file}.${process.pid}.tmp`;
      writeFileSync(temporary, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
      renameSync(temporary, this.file);
    } catch (error) {
      throw new CliError(`cannot write ${this.file} (${describeFsError(error)})`, 'check the folder is writable, or set XDG_CONFIG_HOME');
    }
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && 'code' in error && error.code === 'ENOENT';
}

export function describeFsError(error: unknown): string {
  if (error instanceof Error && 'code' in error) {
    switch (error.code) {
      case 'ENOENT':
        return 'no such file';
      case 'EACCES':
      case 'EPERM':
        return 'permission denied';
      case 'EISDIR':
        return 'it is a folder';
      default:
        return String(error.code);
    }
  }
  return error instanceof Error ? error.message : String(error);
}
