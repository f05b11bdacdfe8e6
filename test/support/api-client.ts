/**
 * A client of the Conflux REST API for tests that checks EVERY response it receives against the
 * OpenAPI document the API serves: the document itself with @apidevtools/swagger-parser, then for
 * each answer the operation (method and path template), that the status is one the operation
 * declares, the content type it declares for that status, and the body against its schema (ajv,
 * JSON Schema 2020-12). An answer on a path the document does not have (404, 405) must be a
 * problem document. Any mismatch fails the request with every reason.
 *
 *   const api = await ApiClient.connect('http://127.0.0.1:1880', '/api');
 *   const answer = await api.get('/v2/event-types', { key });
 */
import { strict as assert } from 'node:assert';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { ValidateFunction } from 'ajv';
import { apiAjv } from '../../nodes/core/api/validate';

type Doc = {
  servers?: Array<{ url: string }>;
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema?: object }> }> }>>;
  components: { schemas: { Problem: object } };
};

export interface ApiAnswer {
  status: number;
  headers: Headers;
  /** The parsed body ({} when empty). */
  body: Record<string, any>;
  text: string;
}

export interface ApiRequestOptions {
  /** The API key, sent in the first key header (EAPI-ELCLV2) unless `bearer`. */
  key?: string;
  bearer?: boolean;
  headers?: Record<string, string>;
  /** A JSON value (serialised) or a raw string. */
  body?: unknown;
}

export class ApiClient {
  /** Answers validated so far (a test can assert that it saw some). */
  validated = 0;
  private readonly ajv = apiAjv();
  private readonly compiled = new Map<object, ValidateFunction>();

  private constructor(
    readonly origin: string,
    /** The base path as served (`/api`). */
    readonly base: string,
    /** The dereferenced document. */
    readonly document: Doc,
    /** The document as served. */
    readonly raw: Record<string, unknown>,
  ) {}

  /** Fetches `<base>/v2/openapi.json`, validates it, and returns a client that checks against it. */
  static async connect(origin: string, base = '/api'): Promise<ApiClient> {
    const res = await fetch(`${origin}${base}/v2/openapi.json`);
    assert.equal(res.status, 200, `GET ${base}/v2/openapi.json answered ${res.status}`);
    const raw = (await res.json()) as Record<string, unknown>;
    await SwaggerParser.validate(structuredClone(raw) as never);
    const document = (await SwaggerParser.dereference(structuredClone(raw) as never)) as unknown as Doc;
    assert.equal((raw as { openapi?: string }).openapi, '3.1.0');
    return new ApiClient(origin, base, document, raw);
  }

  get(path: string, options: ApiRequestOptions = {}): Promise<ApiAnswer> {
    return this.request('GET', path, options);
  }

  post(path: string, body: unknown, options: ApiRequestOptions = {}): Promise<ApiAnswer> {
    return this.request('POST', path, { ...options, body });
  }

  /** Sends a request to `<base><path>` (path starts with `/v1` or `/v2`) and checks its answer. */
  async request(method: string, path: string, options: ApiRequestOptions = {}): Promise<ApiAnswer> {
    const headers: Record<string, string> = { ...options.headers };
    if (options.key !== undefined) {
      if (options.bearer) headers.authorization = `Bearer ${options.key}`;
      else headers['EAPI-ELCLV2'] = options.key;
    }
    let body: string | undefined;
    if (options.body !== undefined) {
      body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${this.origin}${this.base}${path}`, { method, headers, body });
    const text = await res.text();
    let parsed: Record<string, any> = {};
    if (text !== '') {
      try {
        parsed = JSON.parse(text) as Record<string, any>;
      } catch {
        assert.fail(`${method} ${path}: ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
      }
    }
    const answer = { status: res.status, headers: res.headers, body: parsed, text };
    this.check(method, path, answer);
    return answer;
  }

  /** Checks one answer against the document; throws with every mismatch. */
  check(method: string, path: string, answer: ApiAnswer): void {
    const where = `${method} ${path} → ${answer.status}`;
    const faults: string[] = [];
    const type = (answer.headers.get('content-type') ?? '').split(';')[0].trim();
    const operation = this.operationOf(method.toLowerCase(), path.split('?')[0]);
    let schema: object | undefined;
    if (!operation) {
      if (type !== 'application/problem+json')
        faults.push(`a path and method the document lacks must answer a problem document, not ${type || 'no content type'}`);
      schema = this.document.components.schemas.Problem;
    } else {
      const response = operation.responses[String(answer.status)] ?? operation.responses.default;
      if (!response) faults.push(`status ${answer.status} is not among the operation's responses (${Object.keys(operation.responses).join(', ')})`);
      else if (!response.content) {
        if (answer.text !== '') faults.push('the document declares no body, but one came');
      } else {
        const media = response.content[type];
        if (!media) faults.push(`content type ${type || '(none)'} is not among ${Object.keys(response.content).join(', ')}`);
        schema = media?.schema;
      }
    }
    if (schema) {
      let validate = this.compiled.get(schema);
      if (!validate) {
        validate = this.ajv.compile(schema);
        this.compiled.set(schema, validate);
      }
      if (!validate(answer.body)) faults.push(`the body does not match its schema: ${this.ajv.errorsText(validate.errors)}; body ${answer.text.slice(0, 300)}`);
    }
    assert.deepEqual(faults, [], `${where}: the answer does not conform to the OpenAPI document`);
    this.validated++;
  }

  /** The document's operation for a method and a path relative to the base (`/v2/devices/x`). */
  private operationOf(method: string, path: string): Doc['paths'][string][string] | undefined {
    const parts = path.split('/').filter(Boolean);
    let best: { op: Doc['paths'][string][string]; literals: number } | undefined;
    for (const [template, item] of Object.entries(this.document.paths)) {
      const t = template.split('/').filter(Boolean);
      if (t.length !== parts.length || !item[method]) continue;
      const param = (seg: string) => seg.startsWith('{') && seg.endsWith('}');
      if (!t.every((seg, i) => param(seg) || seg.toLowerCase() === parts[i].toLowerCase())) continue;
      const literals = t.filter((seg) => !param(seg)).length;
      if (!best || literals > best.literals) best = { op: item[method], literals };
    }
    return best?.op;
  }
}
