// The API surface as the running hub's /openapi.json describes it, for the scenarios that must
// cover every route, including routes added later: its operations, and values for their
// parameters and bodies made from their JSON Schemas (one valid example, or a fast-check
// arbitrary of valid-ish values).
import fc from 'fast-check';

export type JsonSchema = { [key: string]: unknown };

interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: JsonSchema;
}

export interface Operation {
  operationId?: string;
  parameters?: Parameter[];
  requestBody?: {
    required?: boolean;
    content?: Record<
      string,
      { schema?: JsonSchema; examples?: Record<string, { summary?: string; value: unknown }> }
    >;
  };
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: JsonSchema }> }>;
}

export interface OpenApiDoc {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, JsonSchema> };
}

export interface ApiOperation {
  operationId: string | undefined;
  /** Upper case. */
  method: string;
  /** The path template, `/v1/users/{id}`. */
  path: string;
  /** `GET /v1/users/{id}`. */
  key: string;
  pathParams: Array<{ name: string; schema: JsonSchema }>;
  queryParams: Array<{ name: string; required: boolean; schema: JsonSchema }>;
  /** The JSON body's schema, refs resolved at the top. */
  body: JsonSchema | undefined;
  /** The statuses it declares, `200`, `404` …, each with the error codes its description lists. */
  responses: Map<number, string[]>;
}

const METHODS = new Set(['get', 'post', 'put', 'patch', 'delete']);

export async function loadOpenApi(base: string): Promise<OpenApiDoc> {
  const res = await fetch(`${base}/openapi.json`);
  if (!res.ok) throw new Error(`/openapi.json answered ${res.status}`);
  return (await res.json()) as OpenApiDoc;
}

export function resolve(doc: OpenApiDoc, schema: JsonSchema): JsonSchema {
  let s = schema;
  for (let i = 0; typeof s.$ref === 'string' && i < 10; i++) {
    const name = s.$ref.replace('#/components/schemas/', '');
    const target = doc.components?.schemas?.[name];
    if (!target) throw new Error(`unresolvable $ref ${s.$ref}`);
    s = target;
  }
  return s;
}

/** Every operation of the document, in its order. */
export function operations(doc: OpenApiDoc): ApiOperation[] {
  const out: ApiOperation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.has(method)) continue;
      const params = op.parameters ?? [];
      const content = op.requestBody?.content ?? {};
      const json = content['application/json']?.schema;
      const other = Object.keys(content).filter((type) => type !== 'application/json');
      if (other.length > 0) throw new Error(`${method} ${path}: request body type ${other} is not handled`);
      out.push({
        operationId: op.operationId,
        method: method.toUpperCase(),
        path,
        key: `${method.toUpperCase()} ${path}`,
        pathParams: params
          .filter((p) => p.in === 'path')
          .map((p) => ({ name: p.name, schema: p.schema ?? {} })),
        queryParams: params
          .filter((p) => p.in === 'query')
          .map((p) => ({ name: p.name, required: p.required === true, schema: p.schema ?? {} })),
        body: json ? resolve(doc, json) : undefined,
        responses: new Map(
          Object.entries(op.responses ?? {}).map(([status, r]) => [
            Number(status),
            codesOf(r.description ?? ''),
          ]),
        ),
      });
    }
  }
  return out;
}

/** The error codes a response's description lists, backquoted (`validation_failed`). */
export function codesOf(description: string): string[] {
  return [...description.matchAll(/`([a-z_]+)`/g)].map((m) => m[1] as string);
}

/** `.` and `..` (also percent-encoded): the client's URL resolution removes them (RFC 3986 §5.2.4). */
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

/**
 * The operation a request reaches, as the router picks it: the method, and a path template
 * whose literal segments equal the path's and whose `{params}` each take one non-empty segment
 * (more literal segments win). Undefined for a request no operation takes, and for a path with
 * dot segments, which is not the path sent.
 */
export function operationOf(ops: ApiOperation[], method: string, path: string): ApiOperation | undefined {
  const segments = path.split('?')[0]?.split('/') ?? [];
  if (segments.some((s) => DOT_SEGMENT.test(s))) return undefined;
  const literal = (template: string) => template.split('/').filter((s) => !s.startsWith('{')).length;
  return ops
    .filter((op) => op.method === method.toUpperCase())
    .filter((op) => {
      const parts = op.path.split('/');
      return (
        parts.length === segments.length &&
        parts.every((part, i) => (part.startsWith('{') ? segments[i] !== '' : part === segments[i]))
      );
    })
    .sort((a, b) => literal(b.path) - literal(a.path))[0];
}

/** The concrete path: each `{name}` replaced by its URL-encoded value. */
export function fillPath(template: string, values: Record<string, string>): string {
  return template.replace(/\{([^}]+)\}/g, (_m, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no value for {${name}} of ${template}`);
    return encodeURIComponent(value);
  });
}

function typesOf(s: JsonSchema): string[] {
  if (Array.isArray(s.type)) return s.type as string[];
  if (typeof s.type === 'string') return [s.type];
  if (s.properties || s.additionalProperties !== undefined) return ['object'];
  return [];
}

/** A small valid value of the schema: required properties only, the first enum value, lower bounds. */
export function exampleOf(doc: OpenApiDoc, schema: JsonSchema): unknown {
  const s = resolve(doc, schema);
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum)) return s.enum[0];
  const options = (s.anyOf ?? s.oneOf) as JsonSchema[] | undefined;
  if (options) {
    const nonNull = options.find((o) => !typesOf(resolve(doc, o)).includes('null')) ?? options[0];
    return nonNull ? exampleOf(doc, nonNull) : null;
  }
  const type = typesOf(s).find((t) => t !== 'null') ?? (typesOf(s).includes('null') ? 'null' : undefined);
  switch (type) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, JsonSchema>;
      const required = (s.required ?? []) as string[];
      return Object.fromEntries(required.map((k) => [k, exampleOf(doc, props[k] ?? {})]));
    }
    case 'array':
      return Array.from({ length: Number(s.minItems ?? 0) }, () =>
        exampleOf(doc, (s.items ?? {}) as JsonSchema),
      );
    case 'string': {
      if (s.format === 'date-time') return '2024-05-01T10:15:30Z';
      if (s.format === 'email') return 'someone@example.com';
      if (typeof s.pattern === 'string') {
        const [value] = fc.sample(fc.stringMatching(new RegExp(s.pattern)), { numRuns: 1, seed: 42 });
        return value;
      }
      return 'x'.repeat(Math.max(1, Number(s.minLength ?? 1)));
    }
    case 'integer':
    case 'number': {
      if (typeof s.minimum === 'number') return s.minimum;
      if (typeof s.exclusiveMinimum === 'number') return s.exclusiveMinimum + 1;
      return typeof s.maximum === 'number' ? Math.min(1, s.maximum) : 1;
    }
    case 'boolean':
      return false;
    case 'null':
      return null;
    default:
      return {};
  }
}

/** Text that is valid JSON and a valid string, and that storage or display may not expect. */
export const ODD_TEXT = [
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfff',
  '\ufeff',
  '\u202eevil',
  'e\u0301',
  '😀',
  ' ',
  '\t\n',
  '%00',
  "'; drop table users; --",
  '{{7*7}}',
  '../../etc/passwd',
];

/** Strings with every kind of character: control (NUL included), non-ASCII, astral. */
export const anyString = (maxLength = 40): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ maxLength }),
    fc.string({ unit: 'binary-ascii', maxLength }),
    fc.string({ unit: 'binary', maxLength }),
    fc.string({ unit: 'grapheme', maxLength }),
  );

/** ISO 8601 date-times the schemas accept, years 0000 to 9999, offsets up to ±23:59, and the edges. */
const anyDateTime: fc.Arbitrary<string> = fc
  .record({
    year: fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.constantFrom(0, 1, 1969, 1970, 2038, 9999)),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 28 }),
    hour: fc.integer({ min: 0, max: 23 }),
    minute: fc.integer({ min: 0, max: 59 }),
    second: fc.integer({ min: 0, max: 59 }),
    fraction: fc.option(fc.stringMatching(/^\d{1,9}$/), { nil: undefined }),
    offset: fc.oneof(
      fc.constant('Z'),
      fc
        .tuple(fc.constantFrom('+', '-'), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
        .map(([sign, h, m]) => `${sign}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`),
    ),
  })
  .map((d) => {
    const p = (n: number, w = 2) => String(n).padStart(w, '0');
    const frac = d.fraction ? `.${d.fraction}` : '';
    return `${p(d.year, 4)}-${p(d.month)}-${p(d.day)}T${p(d.hour)}:${p(d.minute)}:${p(d.second)}${frac}${d.offset}`;
  });

export const dateTime: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: anyDateTime, weight: 4 },
  {
    arbitrary: fc.constantFrom(
      '0000-01-01T00:00:00Z',
      '0000-01-01T00:00:00+01:00',
      '0001-01-01T00:00:00Z',
      '9999-12-31T23:59:59Z',
      '9999-12-31T23:59:59-23:59',
      '1970-01-01T00:00:00Z',
      '2024-02-29T12:00:00.123456789+05:30',
    ),
    weight: 1,
  },
);

function stringArbitrary(
  s: JsonSchema,
  dictionary: readonly string[],
  strict: boolean,
): fc.Arbitrary<string> {
  const min = Number(s.minLength ?? 0);
  const max = typeof s.maxLength === 'number' ? s.maxLength : undefined;
  const fits = (v: string) => v.length >= min && (max === undefined || v.length <= max);
  let valid: fc.Arbitrary<string>;
  let free = false;
  if (s.format === 'date-time') valid = dateTime;
  else if (s.format === 'email') valid = fc.emailAddress();
  else if (typeof s.pattern === 'string') valid = fc.stringMatching(new RegExp(s.pattern)).filter(fits);
  else {
    free = true;
    const size = { minLength: min, maxLength: Math.max(min, Math.min(max ?? 40, 40)) };
    // Any character is valid here, control characters and NUL included.
    valid = fc.oneof(
      fc.string(size),
      fc.string({ ...size, unit: 'binary-ascii' }),
      fc.string({ ...size, unit: 'binary' }),
    );
  }
  const words = dictionary.filter(fits);
  if (strict) {
    if (!free) return valid;
    // Dictionary words (ids, connector names, event types) and odd text are valid wherever any
    // string of their length is.
    const odd = ODD_TEXT.filter(fits);
    return fc.oneof(
      { arbitrary: valid, weight: 2 },
      ...(words.length > 0 ? [{ arbitrary: fc.constantFrom(...words), weight: 2 }] : []),
      ...(odd.length > 0 ? [{ arbitrary: fc.constantFrom(...odd), weight: 1 }] : []),
    );
  }
  const edges = [
    ...(max !== undefined ? [fc.constant('x'.repeat(max)), fc.constant('y'.repeat(max + 1))] : []),
    fc.constant(''),
  ];
  return fc.oneof(
    { arbitrary: valid, weight: 5 },
    { arbitrary: fc.constantFrom(...dictionary), weight: 3 },
    { arbitrary: anyString(), weight: 2 },
    { arbitrary: fc.oneof(...edges), weight: 1 },
  );
}

/**
 * Values of the schema. `strict`: valid ones (strings drawn from `dictionary` where they fit).
 * Otherwise valid-ish: mostly valid, with boundary values, any string from `dictionary` and, now
 * and then, a value of the wrong kind.
 */
export function arbitraryOf(
  doc: OpenApiDoc,
  schema: JsonSchema,
  dictionary: readonly string[],
  strict = false,
  depth = 0,
): fc.Arbitrary<unknown> {
  const s = resolve(doc, schema);
  const wrong = fc.jsonValue({ maxDepth: 2 });
  const mostly = (arb: fc.Arbitrary<unknown>) =>
    strict ? arb : fc.oneof({ arbitrary: arb, weight: 9 }, { arbitrary: wrong, weight: 1 });
  const sub = (child: JsonSchema) => arbitraryOf(doc, child, dictionary, strict, depth + 1);
  if ('const' in s) return mostly(fc.constant(s.const));
  if (Array.isArray(s.enum)) return mostly(fc.constantFrom(...(s.enum as unknown[])));
  const options = (s.anyOf ?? s.oneOf) as JsonSchema[] | undefined;
  if (options) return fc.oneof(...options.map(sub));
  const types = typesOf(s);
  if (types.length > 1) return fc.oneof(...types.map((type) => sub({ ...s, type })));
  switch (types[0]) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, JsonSchema>;
      const required = (s.required ?? []) as string[];
      const known = fc.record(Object.fromEntries(Object.entries(props).map(([k, v]) => [k, sub(v)])), {
        requiredKeys: required.filter((k) => k in props),
      });
      const ap = s.additionalProperties;
      const keys = strict
        ? fc.constantFrom(...dictionary)
        : fc.oneof(fc.constantFrom(...dictionary), anyString(20));
      const values =
        ap && typeof ap === 'object' && Object.keys(ap).length > 0
          ? sub(ap as JsonSchema)
          : fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' });
      const extra =
        ap === false || depth > 3
          ? strict
            ? fc.constant({})
            : fc.oneof(
                { arbitrary: fc.constant({}), weight: 9 },
                { arbitrary: fc.dictionary(keys, wrong, { maxKeys: 2 }), weight: 1 },
              )
          : fc.dictionary(keys, values, { maxKeys: 4 });
      return mostly(fc.tuple(known, extra).map(([k, e]) => ({ ...e, ...k })));
    }
    case 'array': {
      const item = sub((s.items ?? {}) as JsonSchema);
      const min = Number(s.minItems ?? 0);
      const max = typeof s.maxItems === 'number' ? s.maxItems : min + 4;
      const sized = fc.array(item, { minLength: min, maxLength: Math.min(max, min + 4) });
      return strict
        ? sized
        : mostly(
            fc.oneof(
              { arbitrary: sized, weight: 8 },
              { arbitrary: fc.array(item, { minLength: max + 1, maxLength: max + 1 }), weight: 1 },
              { arbitrary: fc.constant([]), weight: 1 },
            ),
          );
    }
    case 'string':
      return mostly(stringArbitrary(s, dictionary, strict));
    case 'integer':
    case 'number': {
      const exclusive = typeof s.exclusiveMinimum === 'number';
      const lo = typeof s.minimum === 'number' ? s.minimum : exclusive ? Number(s.exclusiveMinimum) : -1e6;
      const hi = typeof s.maximum === 'number' ? s.maximum : 1e6;
      const inRange =
        types[0] === 'integer'
          ? fc.integer({ min: Math.ceil(lo + (exclusive ? 1 : 0)), max: Math.floor(hi) })
          : fc.double({ min: lo, max: hi, noNaN: true, minExcluded: exclusive });
      if (strict) return inRange;
      const edges = fc.constantFrom(lo - 1, lo, hi, hi + 1, 0.5, -0, 1e308, -1e308, 2 ** 53 + 2);
      return mostly(fc.oneof({ arbitrary: inRange, weight: 6 }, { arbitrary: edges, weight: 2 }));
    }
    case 'boolean':
      return mostly(fc.boolean());
    case 'null':
      return fc.constant(null);
    default:
      return fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' });
  }
}
