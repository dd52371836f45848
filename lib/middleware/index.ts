// The package's Middy entry (`lambda-memcache/middleware`): the HTTP cache middleware. Only this
// entry needs @middy/core (an optional peer dependency); the same behaviour without Middy is
// withHttpCache in `lambda-memcache/cache`.

export type { HttpCacheOptions, HttpEvent, HttpResult } from "../cache/httpCache.ts";
export { httpCacheMiddleware } from "./httpCache.ts";
