import assert from 'node:assert/strict';
import { dereference } from '@readme/openapi-parser';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { OpenApiDocument } from '../../src/http/openapi/document.ts';

/** What the checker needs of an answer (a light-my-request response has it). */
export interface ObservedResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | number | undefined>;
  readonly body: string;
}

type JsonObject = Record<string, unknown>;
interface DocumentedResponse {
  readonly description: string;
  readonly headers?: Record<string, { readonly required?: boolean; readonly schema: JsonObject }>;
  readonly content?: Record<string, { readonly schema: JsonObject }>;
}

/**
 * Checks real answers against an OpenAPI document: the status is documented for the operation,
 * the content type is one it documents, the body validates against its schema (ajv, JSON Schema
 * 2020-12, formats checked) and every required header is there and valid.
 */
export class ContractChecker {
  readonly #document: JsonObject;
  readonly #ajv: Ajv2020;
  readonly #compiled = new WeakMap<object, ValidateFunction>();

  private constructor(dereferenced: JsonObject) {
    this.#document = dereferenced;
    this.#ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false });
    addFormats.default(this.#ajv);
  }

  /** `document` with every $ref resolved by the parser (a copy: the original stays as it is). */
  static async of(document: OpenApiDocument): Promise<ContractChecker> {
    const dereferenced = await dereference(structuredClone(document) as unknown as Parameters<typeof dereference>[0]);
    return new ContractChecker(dereferenced as unknown as JsonObject);
  }

  /** The documented answers of `method path`, or undefined when the document has no such operation. */
  responsesOf(method: string, path: string): Record<string, DocumentedResponse> | undefined {
    const paths = this.#document.paths as Record<string, Record<string, { responses: Record<string, DocumentedResponse> }>>;
    return paths[path]?.[method.toLowerCase()]?.responses;
  }

  /** Asserts that `response`, the answer to `method path`, is one the document describes. */
  check(method: string, path: string, response: ObservedResponse): void {
    const responses = this.responsesOf(method, path);
    const what = `${method} ${path} → ${response.statusCode}`;
    const documented = responses === undefined ? this.#notFound(what) : responses[String(response.statusCode)];
    assert.ok(documented, `${what} is not documented (documented: ${Object.keys(responses ?? {}).join(', ')}); body: ${response.body.slice(0, 300)}`);
    this.#checkHeaders(what, documented, response);
    this.#checkBody(what, method, documented, response);
  }

  /** A path the document lacks must be the not-found answer. */
  #notFound(what: string): DocumentedResponse {
    const components = this.#document.components as { responses: Record<string, DocumentedResponse> };
    assert.ok(components.responses.NotFound, `${what}: no operation, and no NotFound response`);
    return components.responses.NotFound;
  }

  #checkHeaders(what: string, documented: DocumentedResponse, response: ObservedResponse): void {
    for (const [name, header] of Object.entries(documented.headers ?? {})) {
      const value = response.headers[name.toLowerCase()];
      if (value === undefined) {
        assert.ok(!header.required, `${what}: the required header ${name} is missing`);
        continue;
      }
      const typed = header.schema.type === 'integer' ? Number(value) : value;
      this.#assertValid(`${what} header ${name}`, header.schema, typed);
    }
  }

  #checkBody(what: string, method: string, documented: DocumentedResponse, response: ObservedResponse): void {
    if (method === 'HEAD' || documented.content === undefined) {
      assert.equal(response.body, '', `${what}: no body is documented`);
      return;
    }
    const contentType = String(response.headers['content-type'] ?? '');
    const mediaType = contentType.split(';')[0]!.trim();
    const content = documented.content[mediaType];
    assert.ok(content, `${what}: content type ${contentType} is not documented (documented: ${Object.keys(documented.content).join(', ')})`);
    const body: unknown = mediaType.endsWith('json') ? JSON.parse(response.body) : response.body;
    this.#assertValid(`${what} body`, content.schema, body);
  }

  #assertValid(what: string, schema: JsonObject, value: unknown): void {
    let validate = this.#compiled.get(schema);
    if (!validate) this.#compiled.set(schema, (validate = this.#ajv.compile(schema)));
    assert.ok(validate(value), `${what} does not match the documented schema: ${this.#ajv.errorsText(validate.errors)}; value: ${JSON.stringify(value).slice(0, 300)}`);
  }

  /** Whether `value` matches `schema` (for checking the checker: a wrong body must fail). */
  matches(schema: JsonObject, value: unknown): boolean {
    let validate = this.#compiled.get(schema);
    if (!validate) this.#compiled.set(schema, (validate = this.#ajv.compile(schema)));
    return validate(value);
  }

  /** A component schema of the dereferenced document. */
  schema(name: string): JsonObject {
    return (this.#document.components as { schemas: Record<string, JsonObject> }).schemas[name]!;
  }
}
