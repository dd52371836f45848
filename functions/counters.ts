// GET /counters/{name}: the current value (0 when never counted).
// POST /counters/{name}: adds 1 with a CAS loop; never loses an update.
// Both read a counter by the counter rule (lib/cache/counters.ts): decimal text under any flags,
// so a counter another service keeps (pymemcache, pylibmc, incr) reads and counts on the same.
// `value` is a JSON number while it is a safe integer and a decimal string beyond 2^53 - 1, so no
// JavaScript caller ever gets a silently rounded count.
// Counters live only in the cache, so a cache failure is a 503 here, not a silent wrong count;
// a key that holds something other than a counter is a 409 and is left as it is.

import middy from "@middy/core";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { type CounterValue, casIncrement, readCounter } from "../lib/cache/index.ts";
import { MemcacheCounterValueError, MemcacheError, safeKey } from "../lib/index.ts";
import { counterClient } from "./shared/cache.ts";
import { errorResponse, json, type Result, serverError } from "./shared/http.ts";

const counterKey = (name: string) => safeKey(name, "counter:");

/** The counter as the reply carries it: a number while safe, else its decimal text. */
export function counterJson(value: CounterValue): number | string {
  return typeof value === "number" ? value : value.toString();
}

async function withCounterStore(name: string, run: () => Promise<CounterValue>): Promise<Result> {
  try {
    return json(200, { name, value: counterJson(await run()) });
  } catch (error) {
    if (error instanceof MemcacheCounterValueError) {
      return json(409, { error: "not a counter: the key holds a value that is not decimal text" });
    }
    if (!(error instanceof MemcacheError)) throw error;
    return serverError(503, "counter store unavailable", {
      message: error.message,
      name: error.name,
      counter: name,
    });
  }
}

const readHandler = async (event: APIGatewayProxyEventV2): Promise<Result> => {
  const name = event.pathParameters?.name ?? "";
  return withCounterStore(name, () => readCounter(counterClient, counterKey(name)));
};

const incrementHandler = async (event: APIGatewayProxyEventV2): Promise<Result> => {
  const name = event.pathParameters?.name ?? "";
  return withCounterStore(name, () => casIncrement(counterClient, counterKey(name), 1));
};

export const get = middy(readHandler).use(errorResponse());
export const post = middy(incrementHandler).use(errorResponse());
