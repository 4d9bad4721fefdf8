import zlib from 'node:zlib';

/** The Content-Encodings a request body may have: zstd where this Node has it (22.15+), then the classics. */
export const REQUEST_ENCODINGS: readonly ('zstd' | 'br' | 'gzip' | 'deflate')[] = [
  ...('createZstdDecompress' in zlib ? (['zstd'] as const) : []),
  'br',
  'gzip',
  'deflate',
];
