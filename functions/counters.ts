// GET /counters/{name}: the current value (0 when never counted).
// POST /counters/{name}: increments with a CAS loop; never loses an update.
// Counters live only in the cache, so a cache failure is a 503 here, not a silent wrong count.

import middy from "@middy/core";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { casUpdate, readCounter } from "../lib/cache/counters.ts";
import { MemcacheError } from "../lib/memcache/errors.ts";
import { safeKey } from "../lib/memcache/keys.ts";
import { counterClient } from "./shared/cache.ts";
import { errorResponse, json, type Result } from "./shared/http.ts";

const counterKey = (name: string) => safeKey(name, "counter:");

async function withCounterStore(name: string, run: () => Promise<number>): Promise<Result> {
  try {
    return json(200, { name, value: await run() });
  } catch (error) {
    if (!(error instanceof MemcacheError)) throw error;
    return json(503, { error: "counter store unavailable", detail: error.message });
  }
}

const readHandler = async (event: APIGatewayProxyEventV2): Promise<Result> => {
  const name = event.pathParameters?.name ?? "";
  return withCounterStore(name, () => readCounter(counterClient, counterKey(name)));
};

const incrementHandler = async (event: APIGatewayProxyEventV2): Promise<Result> => {
  const name = event.pathParameters?.name ?? "";
  return withCounterStore(name, () =>
    casUpdate<number>(
      counterClient,
      counterKey(name),
      (current) => (typeof current === "number" ? current : 0) + 1,
    ),
  );
};

export const get = middy(readHandler).use(errorResponse());
export const post = middy(incrementHandler).use(errorResponse());
