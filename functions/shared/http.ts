// Small HTTP helpers shared by the reference handlers.

import type { MiddlewareObj } from "@middy/core";
import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";

export type Result = APIGatewayProxyStructuredResultV2;

export function json(
  statusCode: number,
  body: unknown,
  headers: Record<string, string> = {},
): Result {
  return {
    statusCode,
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  };
}

/**
 * Logs what went wrong as one JSON line (the detail stays in the log) and returns the generic
 * body a 5xx answers with: in AWS an error message names the caches' and the origin's private
 * addresses, which callers must never see.
 */
export function serverError(
  statusCode: number,
  error: string,
  detail: Record<string, unknown>,
  /** Fields for the body that are not internal (e.g. the cutover phase). */
  body: Record<string, string> = {},
): Result {
  console.log(JSON.stringify({ level: "ERROR", status: statusCode, ...detail }));
  return json(statusCode, { ...body, error });
}

/** Turns an unhandled error into a generic JSON 502 (origin unreachable) instead of a bare 500. */
export function errorResponse(): MiddlewareObj {
  return {
    name: "errorResponse",
    onError: (request) => {
      if (request.response !== undefined) return;
      const error = request.error as Error;
      request.response = serverError(502, "upstream failure", {
        message: error.message,
        name: error.name,
      });
    },
  };
}
