import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JetStreamApiError } from '@nats-io/jetstream';
import { ClosedConnectionError, InvalidArgumentError, NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { eventOfMessage, eventOnItsSubject } from '../../src/consumer/batch-consumer.ts';
import { classifyFailure, isConnectionFailure } from '../../src/db/failure-class.ts';
import { isCongestionSignal } from '../../src/db/congestion-signal.ts';
import { toJetStreamError } from '../../src/jetstream/errors.ts';
import { messageIdOf, subjectOfTenant } from '../../src/jetstream/subject.ts';
import { queuedEvent } from '../helpers/events.ts';

const mapped = (error: Error) => toJetStreamError(error, 'publishing');

describe('NATS failures, as the sink chain sees them', () => {
  const table: { error: Error; code: string; kind: 'transient' | 'permanent'; probe: boolean }[] = [
    { error: new TimeoutError(), code: 'JETSTREAM_ERR_TIMEOUT', kind: 'transient', probe: true },
    { error: new RequestError('timeout', { cause: new TimeoutError() }), code: 'JETSTREAM_ERR_TIMEOUT', kind: 'transient', probe: true },
    { error: new ClosedConnectionError(), code: 'JETSTREAM_ERR_UNAVAILABLE', kind: 'transient', probe: true },
    { error: new RequestError('no responders', { cause: new NoRespondersError('audit.acme') }), code: 'JETSTREAM_ERR_UNAVAILABLE', kind: 'transient', probe: true },
    { error: Object.assign(new Error('jetstream is not enabled'), { name: 'JetStreamNotEnabled' }), code: 'JETSTREAM_ERR_UNAVAILABLE', kind: 'transient', probe: true },
    { error: new JetStreamApiError({ code: 503, err_code: 10047, description: 'insufficient resources' }), code: 'JETSTREAM_ERR_STREAM_REFUSED', kind: 'transient', probe: false },
    { error: InvalidArgumentError.format('payload', 'max_payload size exceeded'), code: 'JETSTREAM_ERR_EVENT_REFUSED', kind: 'permanent', probe: false },
  ];
  for (const { error, code, kind, probe } of table) {
    it(`${error.name}: ${error.message} → ${code}, ${kind}${probe ? ', the breaker probes' : ''}`, () => {
      const ours = mapped(error);
      assert.equal((ours as { code?: string }).code, code);
      assert.equal(ours.cause, error, 'the client error is kept as the cause');
      assert.equal(classifyFailure(ours), kind);
      assert.equal(isConnectionFailure(ours), probe);
    });
  }

  it('an abort and an unknown error pass through (unknown: transient, never dead-lettered on a guess)', () => {
    const abort = new DOMException('aborted', 'AbortError');
    assert.equal(mapped(abort), abort);
    const unknown = new Error('something else');
    assert.equal(mapped(unknown), unknown);
    assert.equal(classifyFailure(unknown), 'transient');
  });

  it('timeouts and lost connections are congestion signals for the adaptive window; refusals are not', () => {
    assert.ok(isCongestionSignal(mapped(new TimeoutError())));
    assert.ok(isCongestionSignal(mapped(new ClosedConnectionError())));
    assert.ok(!isCongestionSignal(mapped(InvalidArgumentError.format('payload', 'max_payload size exceeded'))));
  });
});

describe('subjects, message ids and payloads', () => {
  it('one subject token per tenant: a dot in a tenant is written %2E', () => {
    assert.equal(subjectOfTenant('audit', 'acme'), 'audit.acme');
    assert.equal(subjectOfTenant('audit', 'acme.eu'), 'audit.acme%2Eeu');
    assert.equal(subjectOfTenant('audit', 'a..b.'), 'audit.a%2E%2Eb%2E');
  });

  it('the message id is <tenant>/<id> (ids are per tenant)', () => {
    assert.equal(messageIdOf({ tenant: 'acme', id: '0190-x' }), 'acme/0190-x');
  });

  it('the consumer takes exactly one COPY row per message, nothing else', () => {
    const event = queuedEvent({ tenant: 'acme' });
    assert.deepEqual(eventOfMessage({ string: () => event.row }), { id: event.id, tenant: 'acme', row: event.row, bytes: event.bytes });
    assert.throws(() => eventOfMessage({ string: () => event.row + event.row }), /exactly one/);
    assert.throws(() => eventOfMessage({ string: () => 'hello' }), /exactly one/);
    assert.throws(() => eventOfMessage({ string: () => 'not-a-uuid\tacme\tx\n' }), /event id/);
    assert.throws(() => eventOfMessage({ string: () => `${event.id}\tacme\tx\n` }), /fields/);
    assert.deepEqual(eventOnItsSubject({ string: () => event.row, subject: 'audit.acme' }, 'audit'), eventOfMessage({ string: () => event.row }));
    assert.throws(() => eventOnItsSubject({ string: () => event.row, subject: 'audit.other' }, 'audit'), /not its tenant's/);
  });
});
