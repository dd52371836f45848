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

/** Turns an unhandled error into a JSON 502 (origin unreachable) instead of a bare 500. */
export function errorResponse(): MiddlewareObj {
  return {
    name: "errorResponse",
    onError: (request) => {
      if (request.response !== undefined) return;
      const error = request.error as Error;
      console.log(JSON.stringify({ level: "ERROR", message: error.message, name: error.name }));
      request.response = json(502, { error: "upstream failure", detail: error.message });
    },
  };
}
