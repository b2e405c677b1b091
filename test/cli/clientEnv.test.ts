import { describe, expect, it } from 'vitest';
import { readClientEnv } from '../../src/config/env.js';

describe('readClientEnv: where the CLI keeps profiles, and what overrides them', () => {
  it('uses $XDG_CONFIG_HOME, else ~/.config, and %APPDATA% on Windows', () => {
    expect(readClientEnv({ XDG_CONFIG_HOME: '/x/config', HOME: '/home/a' }, 'linux').configDir).toBe('/x/config/jobline');
    expect(readClientEnv({ HOME: '/home/a' }, 'darwin').configDir).toBe('/home/a/.config/jobline');
    // The XDG spec says a relative XDG_CONFIG_HOME is to be ignored.
    expect(readClientEnv({ XDG_CONFIG_HOME: 'relative', HOME: '/home/a' }, 'linux').configDir).toBe('/home/a/.config/jobline');
    expect(readClientEnv({ APPDATA: 'C:\\Users\\a\\AppData\\Roaming', XDG_CONFIG_HOME: '/ignored' }, 'win32').configDir).toBe('C:\\Users\\a\\AppData\\Roaming\\jobline');
  });

  it('reads JOBLINE_URL, JOBLINE_API_KEY and JOBLINE_PROFILE; an empty variable counts as unset', () => {
    const env = readClientEnv({ JOBLINE_URL: 'http://jobs:3000', JOBLINE_API_KEY: '', JOBLINE_PROFILE: 'staging', HOME: '/h' }, 'linux');
    expect(env).toMatchObject({ url: 'http://jobs:3000', apiKey: null, profile: 'staging' });
  });

  it('NO_COLOR turns colour off; FORCE_COLOR=0 does not force it', () => {
    expect(readClientEnv({ NO_COLOR: '1', HOME: '/h' }, 'linux')).toMatchObject({ noColor: true, forceColor: false });
    expect(readClientEnv({ FORCE_COLOR: '0', HOME: '/h' }, 'linux')).toMatchObject({ noColor: false, forceColor: false });
    expect(readClientEnv({ FORCE_COLOR: '1', HOME: '/h' }, 'linux').forceColor).toBe(true);
  });
});
