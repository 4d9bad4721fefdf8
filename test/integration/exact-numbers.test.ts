import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/database.ts';
import { buildTestService, sampleEvent, waitFor, type TestService } from '../helpers/service.ts';

/** Number tokens a double would change, and what a double made of them before (issue 9, item 17). */
const CASES: readonly (readonly [name: string, token: string])[] = [
  ['a 20-digit integer (was 12345678901234567000)', '12345678901234567890'],
  ['a 21-digit decimal (was 3.141592653589793)', '3.14159265358979323846'],
  ['an overflowing exponent (was null)', '1e400'],
  ['an underflowing exponent (was 0)', '1e-400'],
  ['a trailing zero (was 1.5)', '1.50'],
];

/** One event's JSON text whose metadata holds `token` in three places, written as sent. */
function eventText(tenant: string, token: string): { text: string; metadata: string } {
  const metadata = `{"n":${token},"list":[${token}, 7],"deep":{"x":{"y":${token}}}}`;
  return { text: JSON.stringify(sampleEvent({ tenant, metadata: '@M@' })).replace('"@M@"', metadata), metadata };
}

describe('metadata numbers are stored with the digits sent', () => {
  let db: TestDatabase;
  let service: TestService;
  before(async () => {
    db = await createTestDatabase();
    service = await buildTestService(db.url);
  });
  after(async () => {
    await service.close();
    await db.drop();
  });

  /** metadata::text of the stored events of `tenant`, against what PostgreSQL makes of the sent text. */
  async function assertStoredExactly(tenant: string, sentMetadata: string, count: number): Promise<void> {
    await waitFor(async () => (await db.count(`tenant = '${tenant}'`)) === count, 10_000, `${count} events of ${tenant}`);
    const { rows } = await db.pool.query<{ stored: string; expected: string }>(
      'SELECT metadata::text AS stored, $2::jsonb::text AS expected FROM events WHERE tenant = $1',
      [tenant, sentMetadata],
    );
    assert.equal(rows.length, count);
    for (const row of rows) assert.equal(row.stored, row.expected);
  }

  CASES.forEach(([name, token], caseIndex) => {
    it(`keeps ${name} in /event, /events NDJSON and /events JSON arrays`, async () => {
      const single = eventText(`exact-${caseIndex}-single`, token);
      const one = await service.app.inject({ method: 'POST', url: '/event', headers: { 'content-type': 'application/json' }, payload: single.text });
      assert.equal(one.statusCode, 202, one.body);

      const ndjson = [eventText(`exact-${caseIndex}-ndjson`, token), eventText(`exact-${caseIndex}-ndjson`, '5')];
      const lines = await service.app.inject({
        method: 'POST',
        url: '/events',
        headers: { 'content-type': 'application/x-ndjson' },
        payload: ndjson.map((event) => event.text).join('\n'),
      });
      assert.equal(lines.statusCode, 202, lines.body);

      // An array whose first element has no such number and whose second has: each element alone.
      const plain = eventText(`exact-${caseIndex}-array-plain`, '5');
      const array = eventText(`exact-${caseIndex}-array`, token);
      const arrayResponse = await service.app.inject({
        method: 'POST',
        url: '/events',
        headers: { 'content-type': 'application/json' },
        payload: `[ ${plain.text} ,\n${array.text}, ${array.text}]`,
      });
      assert.equal(arrayResponse.statusCode, 202, arrayResponse.body);

      await assertStoredExactly(`exact-${caseIndex}-single`, single.metadata, 1);
      // The three requests may commit in different batches: wait for the NDJSON pair too.
      await waitFor(async () => (await db.count(`tenant = 'exact-${caseIndex}-ndjson'`)) === 2, 10_000, 'the NDJSON pair');
      const { rows } = await db.pool.query<{ stored: string }>(`SELECT metadata::text AS stored FROM events WHERE tenant = $1 AND metadata->>'n' <> '5'`, [`exact-${caseIndex}-ndjson`]);
      assert.equal(rows.length, 1);
      const { rows: expected } = await db.pool.query<{ text: string }>('SELECT $1::jsonb::text AS text', [ndjson[0]!.metadata]);
      assert.equal(rows[0]!.stored, expected[0]!.text);
      await assertStoredExactly(`exact-${caseIndex}-array`, array.metadata, 2);
      await assertStoredExactly(`exact-${caseIndex}-array-plain`, plain.metadata, 1);
      if (token !== '1e400' && token !== '1e-400') assert.ok(expected[0]!.text.includes(token), `${expected[0]!.text} holds ${token}`);
    });
  });

  it('still refuses metadata over 8 KiB, too deep, or with a forbidden key when it holds such numbers', async () => {
    const big = `{"n":1e400,"pad":"${'x'.repeat(8200)}"}`;
    const deep = `{"n":1e400,"a":${'{"b":'.repeat(9)}1${'}'.repeat(9)}}`;
    const forbidden = `{"n":1e400,"a":{"constructor":{"prototype":{"x":1}}}}`;
    for (const [what, metadata, code] of [
      ['over 8 KiB', big, 'INGEST_ERR_VALIDATION'],
      ['nested 10 deep', deep, 'INGEST_ERR_VALIDATION'],
      ['constructor.prototype', forbidden, 'INGEST_ERR_FORBIDDEN_KEY'],
    ] as const) {
      const text = JSON.stringify(sampleEvent({ tenant: 'exact-refused', metadata: '@M@' })).replace('"@M@"', metadata);
      const response = await service.app.inject({ method: 'POST', url: '/event', headers: { 'content-type': 'application/json' }, payload: text });
      assert.equal(response.statusCode, 400, `${what}: ${response.body}`);
      assert.equal(response.json<{ code: string }>().code, code, what);
    }
    const outside = JSON.stringify(sampleEvent({ tenant: 'exact-refused', action: '@A@' })).replace('"@A@"', '1e400');
    const response = await service.app.inject({ method: 'POST', url: '/event', headers: { 'content-type': 'application/json' }, payload: outside });
    assert.equal(response.statusCode, 400, 'a number where a string belongs');
    const asMetadata = JSON.stringify(sampleEvent({ tenant: 'exact-refused', metadata: '@M@' })).replace('"@M@"', '1e400');
    const refused = await service.app.inject({ method: 'POST', url: '/event', headers: { 'content-type': 'application/json' }, payload: asMetadata });
    assert.equal(refused.statusCode, 400, `metadata that is itself an exact number is not an object: ${refused.body}`);
    assert.equal(await db.count("tenant = 'exact-refused'"), 0);
  });
});
