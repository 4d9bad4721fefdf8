// The batcher package's fake clock: the service's Clock is the package's (src/clock.ts re-exports it).
export * from '../../packages/batcher/test/fake-clock.ts';
