// GET /products/{id}: cache-aside over the origin (x-cache: HIT / MISS / BYPASS).
// PUT /products/{id}: writes the origin, then invalidates the cached copy in every cluster
// (x-cache-invalidated: complete, or incomplete when a cluster did not acknowledge it).

import middy from "@middy/core";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { safeKey } from "../lib/index.ts";
import { httpCacheMiddleware } from "../lib/middleware/index.ts";
import { cache } from "./shared/cache.ts";
import { appConfig } from "./shared/config.ts";
import { errorResponse, type Result } from "./shared/http.ts";
import { recordIncompleteInvalidation } from "./shared/metrics.ts";
import * as origin from "./shared/origin.ts";

const ttlSeconds = appConfig.productTtlSeconds;
const keyPrefix = "products:";

// GET and PUT must agree on the key: both derive it from the id alone (query strings do not
// change a product), and the middleware hashes it into a safe key.
const keyText = (id: string) => `product/${id}`;

/** The memcached key a product is cached under. */
export const productKey = (id: string) => safeKey(keyText(id), keyPrefix);

const readProduct = async (event: APIGatewayProxyEventV2): Promise<Result> => {
  const response = await origin.getProduct(event.pathParameters?.id ?? "");
  return {
    statusCode: response.status,
    headers: { "content-type": "application/json" },
    body: response.body,
  };
};

// Unknown products (404) are not cached: only 2xx responses are (see lib/cache/httpCache.ts).
export const get = middy(readProduct)
  .use(errorResponse())
  .use(
    httpCacheMiddleware({
      cache,
      ttlSeconds,
      keyPrefix,
      getKey: (event) => keyText((event as APIGatewayProxyEventV2).pathParameters?.id ?? ""),
    }),
  );

const writeProduct = async (event: APIGatewayProxyEventV2): Promise<Result> => {
  const id = event.pathParameters?.id ?? "";
  const body = event.isBase64Encoded
    ? Buffer.from(event.body ?? "", "base64").toString("utf8")
    : (event.body ?? "");
  const response = await origin.putProduct(id, body);
  if (response.status < 200 || response.status > 299) {
    return {
      statusCode: response.status,
      headers: { "content-type": "application/json" },
      body: response.body,
    };
  }
  // Invalidate after the origin write: a reader between the two gets the old value at most
  // until this invalidation, never after it. "incomplete": a cluster did not acknowledge it (after
  // retries), so readers may still get the old value there; said here and counted as a metric,
  // never answered as if all went well.
  const complete = await cache.invalidate(productKey(id));
  if (!complete) recordIncompleteInvalidation(productKey(id));
  return {
    statusCode: response.status,
    headers: {
      "content-type": "application/json",
      "x-cache-invalidated": complete ? "complete" : "incomplete",
    },
    body: response.body,
  };
};

export const put = middy(writeProduct).use(errorResponse());
