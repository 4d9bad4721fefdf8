/**
 * `npm run openapi [> openapi.json]`: print the OpenAPI 3.1 document that GET /openapi.json serves
 * for this environment's configuration (AUTH, ACK_MODE, the limits, METRICS_ON_PUBLIC_LISTENER),
 * without starting the service or a database: for generating a client, or diffing the contract in
 * review. Exit codes: 0 ok, 2 usage or configuration error.
 */
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../src/config.ts';
import { buildOpenApiDocument } from '../src/http/openapi/document.ts';
import { REQUEST_ENCODINGS } from '../src/http/request-encodings.ts';
import { packageVersion } from '../src/package-version.ts';

const USAGE = `usage: npm run openapi [> openapi.json]

Prints the OpenAPI 3.1 document GET /openapi.json serves for this environment's configuration
(AUTH, ACK_MODE, BODY_LIMIT_BYTES, BULK_*, METRICS_ON_PUBLIC_LISTENER). Needs no database.
Exit codes: 0 ok, 2 usage or configuration error.`;

let help: boolean | undefined;
try {
  ({ help } = parseArgs({ options: { help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }).values);
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}\n`);
  process.exit(2);
}
if (help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

let config: Config;
try {
  config = loadConfig(process.env);
} catch (error) {
  process.stderr.write(`${error instanceof ConfigError ? error.message : String(error)}\n`);
  process.exit(2);
}

const document = buildOpenApiDocument({
  version: packageVersion(),
  auth: config.auth.enabled,
  ackMode: config.ackMode,
  bodyLimitBytes: config.bodyLimitBytes,
  bulk: config.bulk,
  metricsRoute: config.metricsOnPublicListener,
  requestEncodings: REQUEST_ENCODINGS,
});
process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
