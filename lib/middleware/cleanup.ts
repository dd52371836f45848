// Letting the other middlewares clean up when ours ends a request early (a cache hit returned
// from `before`): Middy then runs no `after` and no `onError` of any middleware, so Powertools'
// logMetrics would not flush the invocation's metrics (they would leak into the next one),
// captureLambdaHandler would leave its segment open, and injectLambdaContext would keep keys
// meant for one request.
//
// Powertools' convention (cleanupMiddlewares in @aws-lambda-powertools/commons, which its
// idempotency middleware calls before returning early): each of its middlewares stores its
// cleanup function in `request.internal` under a `powertools-for-aws.*` key; a middleware that
// returns early runs them first, in this order. The contract is these four keys, so it is
// implemented here rather than bringing in commons as a runtime dependency.

export const cleanupKeys = [
  "powertools-for-aws.tracer",
  "powertools-for-aws.metrics",
  "powertools-for-aws.logger",
  "powertools-for-aws.idempotency",
] as const;

/** The part of a Middy request the cleanup reads. */
export interface RequestWithInternal {
  internal: Record<string, unknown>;
}

type Cleanup = (request: RequestWithInternal) => unknown;

/**
 * Runs the cleanup functions other middlewares left in `request.internal`, one after the other
 * in Powertools' order. Undefined when there are none, so a hit without Powertools awaits nothing.
 */
export function cleanupMiddlewares(request: RequestWithInternal): Promise<void> | undefined {
  const cleanups: Cleanup[] = [];
  for (const key of cleanupKeys) {
    if (!Object.hasOwn(request.internal, key)) continue;
    const cleanup = request.internal[key];
    if (typeof cleanup === "function") cleanups.push(cleanup as Cleanup);
  }
  return cleanups.length === 0 ? undefined : runInOrder(cleanups, request);
}

async function runInOrder(cleanups: readonly Cleanup[], request: RequestWithInternal) {
  for (const cleanup of cleanups) await cleanup(request);
}
