// Middy middleware: cache-aside for HTTP handlers. Only glue: each phase hands the request to the
// HttpCache core in lib/cache; per-request state lives in request.internal, never in module
// variables (one environment may run concurrent invocations under some hosts).
//
// A hit returns from `before`, which ends the request early: Middy then runs NO `after` of any
// middleware. So attach this middleware AFTER those whose `before` must always run (auth,
// validation) and BEFORE those whose `after` decorates the response (CORS, security headers):
// their `after` runs before ours on a miss, so the stored response is already decorated, and a
// hit returns it as it was. Before returning a hit it runs the cleanup functions that Powertools'
// middlewares (logMetrics, injectLambdaContext, captureLambdaHandler) registered, as Powertools'
// own early-returning middleware does (see cleanup.ts): every invocation flushes its own metrics.

import type { MiddlewareObj, Request } from "@middy/core";
import type { Context } from "aws-lambda";
import {
  HttpCache,
  type HttpCacheOptions,
  type HttpEvent,
  type HttpLookup,
  type HttpResult,
} from "../cache/httpCache.ts";
import { cleanupMiddlewares } from "./cleanup.ts";

const name = "httpCache";
const internalKey = `${name}.lookup`;

type CacheRequest = Request<HttpEvent, HttpResult, Error, Context, Record<string, unknown>>;

export function httpCacheMiddleware(
  opts: Partial<HttpCacheOptions>,
): MiddlewareObj<HttpEvent, HttpResult, Error, Context, Record<string, unknown>> {
  const httpCache = new HttpCache(opts);

  const httpCacheMiddlewareBefore = async (request: CacheRequest) => {
    const lookup = await httpCache.lookup(request.event, httpCache.deadlineFor(request.context));
    if (lookup.response !== undefined) {
      const cleanup = cleanupMiddlewares(request);
      if (cleanup !== undefined) await cleanup;
      return lookup.response;
    }
    request.internal[internalKey] = lookup;
    return undefined;
  };

  const httpCacheMiddlewareAfter = async (request: CacheRequest) => {
    const lookup = request.internal[internalKey] as HttpLookup | undefined;
    if (lookup === undefined || request.response == null) return;
    request.response = await httpCache.finish(lookup, request.response);
  };

  // The handler threw while refreshing a stale entry: serve the stale entry (serveStaleOnError).
  const httpCacheMiddlewareOnError = async (request: CacheRequest) => {
    if (request.response !== undefined) return;
    const lookup = request.internal[internalKey] as HttpLookup | undefined;
    const stale = await httpCache.recover(lookup, request.error);
    if (stale !== undefined) request.response = stale;
  };

  return {
    name,
    before: httpCacheMiddlewareBefore,
    after: httpCacheMiddlewareAfter,
    onError: httpCacheMiddlewareOnError,
  };
}

export default httpCacheMiddleware;
