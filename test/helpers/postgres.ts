import pg from 'pg';

/** The machine's PostgreSQL (trust auth); override with JOBLINE_TEST_POSTGRES_URL. */
export const POSTGRES_ADMIN_URL = process.env['JOBLINE_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const IN_CI = process.env['CI'] === 'true';

export async function postgresReachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch (error) {
    // Under CI a missing PostgreSQL is a failure, never a silent skip.
    if (IN_CI) throw new Error(`PostgreSQL is not reachable at ${POSTGRES_ADMIN_URL} under CI=true`, { cause: error });
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Creates an empty database for one test file; returns its URL and a function that drops it. */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `jobline_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await client.connect();
      try {
        await client.query(`drop database if exists ${name} with (force)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** The databases a suite runs on: SQLite always, PostgreSQL when reachable (and always under CI). */
export async function testDatabases(): Promise<('sqlite' | 'postgres')[]> {
  return (await postgresReachable()) ? ['sqlite', 'postgres'] : ['sqlite'];
}
