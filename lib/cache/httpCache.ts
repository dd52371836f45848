// Cache-aside for HTTP responses of API Gateway handlers (HTTP API v2 and REST v1 events).
// All the logic lives here; lib/middleware only routes Middy's phases to lookup(), finish() and
// recover(), and withHttpCache() offers the same behaviour to handlers without Middy.
//
// What is cached (one rule, one place): a response to a GET or HEAD request that carries no
// Authorization header (unless "authorization" is among varyHeaders), with a 2xx status, no
// Set-Cookie / cookies, no `Vary: *`, and no Cache-Control private, no-store or no-cache.
// Everything else passes through untouched. The key is method, path, query (sorted by name) and
// the values of varyHeaders as one JSON array, through safeKey (hashed), so no request text ever
// reaches memcached raw and no value can pass for a separator (see defaultKeyText).

import type {
  APIGatewayProxyEvent,
  APIGatewayProxyEventV2,
  APIGatewayProxyResult,
  APIGatewayProxyStructuredResultV2,
} from "aws-lambda";
import { safeKey } from "../memcache/keys.ts";
import {
  checkOptions,
  functionRule,
  msRule,
  nonEmptyStringRule,
  type OptionRules,
  secondsRule,
  show,
} from "../memcache/options.ts";
import { CacheAside, type CacheStatus, type PendingLoad } from "./cacheAside.ts";

export type HttpEvent = APIGatewayProxyEventV2 | APIGatewayProxyEvent;
export type HttpResult = APIGatewayProxyStructuredResultV2 | APIGatewayProxyResult;

export interface HttpCacheOptions {
  /** The cache-aside core to read and write through. Required. */
  cache: CacheAside;
  /** TTL of cached responses, in seconds. Default 60. */
  ttlSeconds: number;
  /** Prefix of every key this cache writes. Default "http:". */
  keyPrefix: string;
  /** Request headers whose values become part of the key (lowercase names). Default []. */
  varyHeaders: readonly string[];
  /** Custom key text for a request (hashed into a safe key); undefined = do not cache. */
  getKey: ((event: HttpEvent) => string | undefined) | undefined;
  /** Whether a request may be served from / stored in the cache. Default: the rule above. */
  isCacheableRequest: (event: HttpEvent, options: HttpCacheOptions) => boolean;
  /** Whether a response may be stored. Default: the rule above. */
  isCacheableResponse: (response: HttpResult) => boolean;
  /** Response header that reports HIT, HIT-FALLBACK, MISS or BYPASS. Default "x-cache". */
  headerName: string;
  /**
   * Time kept back from the Lambda's remaining time when waiting for another request's load, in
   * ms: the wait's deadline is the invocation's end minus this. Default 1,000.
   */
  deadlineMarginMs: number;
}

/** Every option but `cache`, which has no default. */
export const httpCacheDefaults: Omit<HttpCacheOptions, "cache"> = {
  ttlSeconds: 60,
  keyPrefix: "http:",
  varyHeaders: [],
  getKey: undefined,
  isCacheableRequest: defaultIsCacheableRequest,
  isCacheableResponse: defaultIsCacheableResponse,
  headerName: "x-cache",
  deadlineMarginMs: 1_000,
};

const httpCacheRules: OptionRules<HttpCacheOptions> = {
  cache: (value) =>
    value instanceof CacheAside ? undefined : `must be a CacheAside, got ${show(value)}`,
  ttlSeconds: secondsRule(0),
  keyPrefix: (value) => {
    if (typeof value !== "string") return `must be a string, got ${show(value)}`;
    try {
      safeKey("", value);
      return undefined;
    } catch (error) {
      return `must be usable as a key prefix: ${(error as Error).message}`;
    }
  },
  varyHeaders: (value) =>
    Array.isArray(value) &&
    value.every((name) => typeof name === "string" && /^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name))
      ? undefined
      : `must be an array of lowercase header names, got ${show(value)}`,
  getKey: functionRule,
  isCacheableRequest: functionRule,
  isCacheableResponse: functionRule,
  headerName: nonEmptyStringRule,
  deadlineMarginMs: msRule(0),
};

/** Anything else stored under a response's key counts as a miss and is overwritten. */
const ACCEPT = { accept: isCachedResponse };

/** The outcome of lookup(), handed back to finish() (or recover()) after the handler ran. */
export interface HttpLookup {
  /** Undefined when the request is not cacheable. */
  key: string | undefined;
  status: CacheStatus | undefined;
  /** The cached response, on a hit. */
  response?: HttpResult;
  /** The load this request owes on a MISS or BYPASS: ended by finish() or recover(). */
  load?: PendingLoad<CachedResponse>;
}

interface CachedResponse {
  statusCode: number;
  headers: Record<string, string | number | boolean>;
  /** REST (v1) results may carry repeated headers here. */
  multiValueHeaders?: Record<string, Array<string | number | boolean>>;
  body: string;
  isBase64Encoded: boolean;
  /** When it was stored (ms since epoch), for the Age header. */
  storedAt: number;
}

export class HttpCache {
  readonly options: HttpCacheOptions;
  private readonly cache: CacheAside;

  constructor(options: Partial<HttpCacheOptions>) {
    this.options = checkOptions("HttpCache", options, httpCacheRules, httpCacheDefaults);
    this.cache = this.options.cache;
  }

  /**
   * Until when (ms since the epoch) a request may wait for another one's load: the Lambda's
   * end (from its context) minus deadlineMarginMs; undefined without a Lambda context.
   */
  deadlineFor(context: unknown): number | undefined {
    const remaining = (context as { getRemainingTimeInMillis?: () => number } | undefined)
      ?.getRemainingTimeInMillis;
    if (typeof remaining !== "function") return undefined;
    return Date.now() + Math.max(0, remaining.call(context) - this.options.deadlineMarginMs);
  }

  /** The cache key for a request, or undefined when the request is not cacheable. */
  keyFor(event: HttpEvent): string | undefined {
    if (!this.options.isCacheableRequest(event, this.options)) return undefined;
    const text = this.options.getKey
      ? this.options.getKey(event)
      : defaultKeyText(event, this.options);
    return text === undefined ? undefined : safeKey(text, this.options.keyPrefix);
  }

  /**
   * Before the handler: a hit carries the response to return at once. Concurrent misses of one
   * key wait here (at most until `deadline`, ms since the epoch) while one of them runs the
   * handler. A MISS or BYPASS carries the load this request owes: finish() or recover() ends it.
   */
  async lookup(event: HttpEvent, deadline?: number): Promise<HttpLookup> {
    const key = this.keyFor(event);
    if (key === undefined) return { key, status: undefined };
    const read = await this.cache.acquire<CachedResponse>(
      key,
      deadline === undefined ? ACCEPT : { deadline, accept: isCachedResponse },
    );
    if ("load" in read) return { key, status: read.status, load: read.load };
    return { key, status: read.status, response: this.fromCache(read.value, read.status) };
  }

  /**
   * The handler failed: the stale response to serve instead, when this request was refreshing a
   * stale entry and serveStaleOnError allows; otherwise undefined. Ends the load either way.
   */
  async recover(lookup: HttpLookup | undefined, error: unknown): Promise<HttpResult | undefined> {
    const stale = await lookup?.load?.fail(error);
    return stale === undefined || !isCachedResponse(stale)
      ? undefined
      : this.fromCache(stale, "HIT");
  }

  /**
   * After the handler: on a MISS stores a cacheable response (and gives the lease up for any
   * other), and labels the response with x-cache. Ends the load; a 5xx while refreshing a stale
   * entry serves that entry instead (serveStaleOnError).
   */
  async finish(lookup: HttpLookup, response: HttpResult): Promise<HttpResult> {
    // Only structured results are labelled and cached. A bare object returned by an HTTP API
    // handler is the response body itself: adding a header would change what is sent.
    if (lookup.key === undefined || lookup.status === undefined || !isStructured(response)) {
      await lookup.load?.abandon();
      return response;
    }
    if (response.statusCode >= 500) {
      const stale = await this.recover(
        lookup,
        new Error(`handler answered ${response.statusCode}`),
      );
      if (stale !== undefined) return stale;
    }
    const ttlSeconds = Math.min(this.options.ttlSeconds, maxAgeSeconds(response));
    if (ttlSeconds > 0 && this.options.isCacheableResponse(response)) {
      await lookup.load?.fill(this.toCache(response), ttlSeconds);
    } else {
      await lookup.load?.abandon();
    }
    return withHeader(response, this.options.headerName, lookup.status);
  }

  private toCache(response: HttpResult & { statusCode: number }): CachedResponse {
    const entry: CachedResponse = {
      statusCode: response.statusCode,
      headers: { ...(response.headers ?? {}) },
      body: response.body ?? "",
      isBase64Encoded: response.isBase64Encoded ?? false,
      storedAt: Date.now(),
    };
    const multi = (response as APIGatewayProxyResult).multiValueHeaders;
    if (multi !== undefined) entry.multiValueHeaders = multi;
    delete entry.headers[this.options.headerName];
    delete entry.headers.age;
    return entry;
  }

  private fromCache(entry: CachedResponse, status: CacheStatus): HttpResult {
    const age = Math.max(0, Math.floor((Date.now() - entry.storedAt) / 1000));
    const response: APIGatewayProxyResult = {
      statusCode: entry.statusCode,
      headers: { ...entry.headers, age: String(age), [this.options.headerName]: status },
      body: entry.body,
      isBase64Encoded: entry.isBase64Encoded,
    };
    if (entry.multiValueHeaders !== undefined) response.multiValueHeaders = entry.multiValueHeaders;
    return response;
  }
}

/** The plain wrapper: the same behaviour as the Middy middleware, for handlers without Middy. */
export function withHttpCache<E extends HttpEvent, C>(
  handler: (event: E, context: C) => Promise<HttpResult>,
  options: Partial<HttpCacheOptions>,
): (event: E, context: C) => Promise<HttpResult> {
  const httpCache = new HttpCache(options);
  return async (event, context) => {
    const lookup = await httpCache.lookup(event, httpCache.deadlineFor(context));
    if (lookup.response !== undefined) return lookup.response;
    let response: HttpResult;
    try {
      response = await handler(event, context);
    } catch (error) {
      const stale = await httpCache.recover(lookup, error);
      if (stale !== undefined) return stale;
      throw error;
    }
    return httpCache.finish(lookup, response);
  };
}

// ---- the cacheability rule ----

export function requestMethod(event: HttpEvent): string {
  const v2 = (event as APIGatewayProxyEventV2).requestContext?.http?.method;
  return (v2 ?? (event as APIGatewayProxyEvent).httpMethod ?? "GET").toUpperCase();
}

function requestPath(event: HttpEvent): string {
  return (event as APIGatewayProxyEventV2).rawPath ?? (event as APIGatewayProxyEvent).path ?? "/";
}

function header(event: HttpEvent, name: string): string | undefined {
  const headers = event.headers ?? {};
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return value ?? undefined;
  }
  return undefined;
}

export function defaultIsCacheableRequest(event: HttpEvent, options: HttpCacheOptions): boolean {
  const method = requestMethod(event);
  if (method !== "GET" && method !== "HEAD") return false;
  // A response may depend on who asks: never share it unless the key includes the credential.
  return (
    header(event, "authorization") === undefined || options.varyHeaders.includes("authorization")
  );
}

export function defaultIsCacheableResponse(response: HttpResult): boolean {
  const status = response.statusCode ?? 200;
  if (status < 200 || status > 299) return false;
  if ("cookies" in response && (response.cookies?.length ?? 0) > 0) return false;
  const headers = lowercaseHeaders(response);
  if (headers["set-cookie"] !== undefined) return false;
  if ((headers.vary ?? "").includes("*")) return false;
  const cacheControl = (headers["cache-control"] ?? "").toLowerCase();
  return !/\b(private|no-store|no-cache)\b/.test(cacheControl);
}

function lowercaseHeaders(response: HttpResult): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(response.headers ?? {}))
    out[key.toLowerCase()] = String(value);
  const multi = (response as APIGatewayProxyResult).multiValueHeaders ?? {};
  for (const [key, values] of Object.entries(multi)) out[key.toLowerCase()] = values.join(", ");
  return out;
}

/**
 * The key text of a request: `[method, path, query pairs, vary header values]` as JSON. Built from
 * the parts, never by joining text, so two requests that differ in any part never share it: a
 * value holding `&`, `=`, `?` or a newline stays inside its JSON string (`?q=a%26zone%3Dadmin` and
 * `?q=a&zone=admin` differ, and so do path `/a?b=1` and path `/a` with `b=1?`), and an absent
 * value (null) differs from an empty one.
 */
function defaultKeyText(event: HttpEvent, options: HttpCacheOptions): string {
  const vary = options.varyHeaders.map((name) => [name, headerValues(event, name)]);
  return JSON.stringify([requestMethod(event), requestPath(event), queryPairs(event), vary]);
}

/**
 * The query as [name, value] pairs, sorted by name only (a stable sort: `a=1&a=2` and `a=2&a=1`
 * stay different, because the handler sees their values in that order). HTTP API (v2) events:
 * split from rawQueryString as sent, still percent-encoded (a value without "=" is null), so the
 * pairs are exactly what the handler's parameters are decoded from. REST (v1) events carry only
 * decoded values: every value of a repeated parameter, in order.
 */
function queryPairs(event: HttpEvent): Array<[string, string | null]> {
  const raw = (event as APIGatewayProxyEventV2).rawQueryString;
  let pairs: Array<[string, string | null]>;
  if (raw !== undefined) {
    pairs = raw
      .split("&")
      .filter(Boolean)
      .map((part) => {
        const equals = part.indexOf("=");
        return equals < 0 ? [part, null] : [part.slice(0, equals), part.slice(equals + 1)];
      });
  } else {
    const v1 = event as APIGatewayProxyEvent;
    const multi = v1.multiValueQueryStringParameters ?? {};
    const single = v1.queryStringParameters ?? {};
    const names = [...new Set([...Object.keys(multi), ...Object.keys(single)])];
    pairs = names.flatMap((name) =>
      (multi[name] ?? [single[name] ?? null]).map((value): [string, string | null] => [
        name,
        value,
      ]),
    );
  }
  return pairs.sort((x, y) => compare(x[0], y[0]));
}

/** Every value of header `name` (REST events may repeat one), null when the request has none. */
function headerValues(event: HttpEvent, name: string): string[] | null {
  const multi = (event as APIGatewayProxyEvent).multiValueHeaders ?? {};
  for (const [key, values] of Object.entries(multi)) {
    if (key.toLowerCase() === name && values !== undefined) return values;
  }
  const value = header(event, name);
  return value === undefined ? null : [value];
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `s-maxage` (shared caches) or else `max-age` from Cache-Control, in seconds; Infinity if none. */
function maxAgeSeconds(response: HttpResult): number {
  const cacheControl = lowercaseHeaders(response)["cache-control"] ?? "";
  const match =
    /(?:^|[,\s])s-maxage=(\d+)/i.exec(cacheControl) ??
    /(?:^|[,\s])max-age=(\d+)/i.exec(cacheControl);
  return match === null ? Number.POSITIVE_INFINITY : Number(match[1]);
}

function withHeader(response: HttpResult, name: string, value: string): HttpResult {
  return { ...response, headers: { ...(response.headers ?? {}), [name]: value } };
}

function isObject(value: unknown): value is HttpResult {
  return typeof value === "object" && value !== null;
}

function isStructured(value: unknown): value is HttpResult & { statusCode: number } {
  return isObject(value) && typeof (value as { statusCode?: unknown }).statusCode === "number";
}

function isCachedResponse(value: unknown): value is CachedResponse {
  return (
    isObject(value) &&
    typeof (value as CachedResponse).statusCode === "number" &&
    typeof (value as CachedResponse).body === "string"
  );
}
